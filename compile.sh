#!/usr/bin/env bash
# Builds the single-file `fsbus` executable with `deno compile`, one per target.
#
#   bash compile.sh                      # every target below, into dist/
#   bash compile.sh x86_64-unknown-linux-gnu
#   bash compile.sh --check              # validate the build here (graph, flags, embedded
#                                        # files) with DENORT_BIN=deno; produces nothing
#
# Each output is dist/fsbus-VERSION-TARGET (VERSION from deno.json).
#
# Permissions: the executable is compiled with --allow-all. The CLI reads and writes files,
# calls libc through FFI (inotify, flock, mmap, futex), reads the environment and runs
# commands (--exec, pin), and Deno grants access to paths under /dev (/dev/shm, /dev/fanout,
# /dev/baf) only with --allow-all, so no narrower set works for the default paths.
#
# `deno compile` downloads the runtime for compiled programs (denort) for each target. Where
# it cannot be downloaded, point DENORT_BIN at a denort binary for the host's target.
set -euo pipefail
cd "$(dirname "$0")"
export NO_COLOR=1
unset RUST_BACKTRACE

DENO=${DENO:-deno}
ALL_TARGETS=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu x86_64-apple-darwin aarch64-apple-darwin)
PERMISSIONS=(--allow-all)
# cli.ts imports each command's module by a specifier made at run time (so that start-up does
# not walk every command's module graph): name them here so the executable embeds them.
INCLUDES=()
for f in cli/*.ts; do
  case "$f" in cli/_*) ;; *) INCLUDES+=(--include "$f") ;; esac
done

version=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' deno.json | head -n1)
[ -n "$version" ] || { echo "compile.sh: no version in deno.json" >&2; exit 1; }

host_target() {
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) echo x86_64-unknown-linux-gnu ;;
    Linux-aarch64 | Linux-arm64) echo aarch64-unknown-linux-gnu ;;
    Darwin-x86_64) echo x86_64-apple-darwin ;;
    Darwin-arm64) echo aarch64-apple-darwin ;;
    *) echo "unknown" ;;
  esac
}

check=0
targets=()
for arg in "$@"; do
  case "$arg" in
    --check) check=1 ;;
    -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "compile.sh: unknown option \"$arg\"" >&2; exit 2 ;;
    *) targets+=("$arg") ;;
  esac
done

if [ "$check" = 1 ]; then
  # Validate everything compile does short of a runnable binary: deno itself stands in for
  # denort, so the output is checked and then thrown away.
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  target=$(host_target)
  echo "checking fsbus $version for $target (DENORT_BIN=$(command -v "$DENO"))"
  DENORT_BIN=$(command -v "$DENO") "$DENO" compile "${PERMISSIONS[@]}" "${INCLUDES[@]}" --target "$target" \
    --output "$out/fsbus-$version-$target" cli.ts
  [ -s "$out/fsbus-$version-$target" ] || { echo "compile.sh: no output was written" >&2; exit 1; }
  echo "ok: the graph, flags and embedded files compile; the same entry point runs as:"
  echo "  deno run ${PERMISSIONS[*]} cli.ts"
  exit 0
fi

[ ${#targets[@]} -gt 0 ] || targets=("${ALL_TARGETS[@]}")
if [ -n "${DENORT_BIN:-}" ]; then
  host=$(host_target)
  for t in "${targets[@]}"; do
    if [ "$t" != "$host" ]; then
      echo "compile.sh: DENORT_BIN is a runtime for this machine ($host) only; cannot build $t with it" >&2
      exit 1
    fi
  done
fi

# dist/ is made only for a build that succeeds: a failed run leaves no empty dist/ behind.
made_dist=0
[ -d dist ] || made_dist=1
mkdir -p dist
failed=0
for target in "${targets[@]}"; do
  output="dist/fsbus-$version-$target"
  echo "building $output"
  if ! log=$("$DENO" compile "${PERMISSIONS[@]}" "${INCLUDES[@]}" --target "$target" --output "$output" \
    cli.ts 2>&1); then
    if printf '%s' "$log" | grep -qiE 'error sending request|dns error|failed to lookup|connect'; then
      echo "compile.sh: cannot download the Deno runtime for compiled programs (denort) for $target:" >&2
      echo "  this machine cannot reach Deno's release downloads. Build where it can, or set" >&2
      echo "  DENORT_BIN to a local denort binary for this machine's target." >&2
    else
      printf '%s\n' "$log" >&2
    fi
    failed=1
    continue
  fi
  echo "  $output ($(du -h "$output" | cut -f1))"
done
if [ "$made_dist" = 1 ]; then rmdir dist 2>/dev/null || true; fi
exit $failed
