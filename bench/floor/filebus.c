/*
 * The filebus floor (lossy mode): one file replaced whole for each chunk.
 *
 * pub: for each chunk, flock(FILE.lock, LOCK_EX), open(FILE.__new__, O_WRONLY|O_CREAT|O_TRUNC|
 *      O_NOFOLLOW), write, close, rename(FILE.__new__, FILE), flock(LOCK_UN).
 * sub: inotify on FILE's directory (IN_MOVED_TO | IN_CLOSE_WRITE); for each event naming
 *      FILE: flock(LOCK_EX), open(O_RDONLY|O_NOFOLLOW|O_NONBLOCK), fstat, read, close,
 *      unlock. Lossy: a chunk replaced before it was read is not seen; a chunk read twice
 *      (two events, one file) is counted once.
 *
 *   filebus --role sub --path FILE --count N [--warmup W] [--idle-ms MS]
 *   filebus --role pub --path FILE --count N --size S [--rate R]
 */
#include "floor.h"

#include <libgen.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>

static int open_lock(const char *file) {
  char lock[4096];
  snprintf(lock, sizeof lock, "%s.lock", file);
  int fd = open(lock, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) die("open lock");
  return fd;
}

static int pub(struct opts o) {
  unsigned char *payload = calloc(1, (size_t)o.size);
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.__new__", o.path);
  int lock = open_lock(o.path);
  struct pacer p = pacer_new(o.rate);
  double cpu0 = cpu_ms();
  uint64_t t0 = now_ns();
  for (long i = 0; i < o.count; i++) {
    uint64_t at = pacer_wait(&p, i);
    stamp(payload, (uint64_t)i, at);
    if (flock(lock, LOCK_EX) < 0) die("flock");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) die("open");
    if (write(fd, payload, (size_t)o.size) != o.size) die("write");
    if (close(fd) < 0) die("close");
    if (rename(tmp, o.path) < 0) die("rename");
    flock(lock, LOCK_UN);
  }
  pub_report(o.count, t0, cpu0, p.max_lag_us);
  return 0;
}

static int sub(struct opts o) {
  char dirbuf[4096], basebuf[4096];
  snprintf(dirbuf, sizeof dirbuf, "%s", o.path);
  snprintf(basebuf, sizeof basebuf, "%s", o.path);
  const char *dir = dirname(dirbuf), *base = basename(basebuf);
  int in = inotify_init1(IN_CLOEXEC);
  if (in < 0) die("inotify_init1");
  if (inotify_add_watch(in, dir, IN_MOVED_TO | IN_CLOSE_WRITE | IN_ONLYDIR) < 0) die("watch");
  int lock = open_lock(o.path);
  struct tally t = tally_new(o.count, o.warmup);
  unsigned char *buf = malloc(1 << 20);
  static char ev[1 << 16] __attribute__((aligned(8)));
  uint64_t last = UINT64_MAX;
  ready();
  int done = 0;
  while (!done) {
    struct pollfd pfd = {in, POLLIN, 0};
    if (poll(&pfd, 1, t.received ? (int)o.idle_ms : 60000) == 0) break;
    ssize_t n = read(in, ev, sizeof ev);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("read inotify");
    }
    int changed = 0;
    for (char *p = ev; p < ev + n;) {
      struct inotify_event *e = (struct inotify_event *)p;
      p += sizeof *e + e->len;
      if (e->mask & IN_Q_OVERFLOW) t.overflows++, changed = 1;
      else if (e->len && !strcmp(e->name, base)) changed = 1;
    }
    if (!changed) continue;
    flock(lock, LOCK_EX);
    int fd = open(o.path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd >= 0) {
      struct stat st;
      ssize_t r = -1;
      if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= (1 << 20)) {
        r = read(fd, buf, (size_t)st.st_size);
      }
      close(fd);
      flock(lock, LOCK_UN);
      if (r >= 16) {
        uint64_t seq = get_u64(buf + 8);
        if (seq != last) {
          last = seq;
          tally_add(&t, buf, now_ns());
          if (seq + 1 >= (uint64_t)o.count) done = 1; /* the last chunk: lossy ends here */
        }
      }
    } else {
      flock(lock, LOCK_UN);
    }
  }
  sub_report(&t);
  return 0;
}

int main(int argc, char **argv) {
  struct opts o = parse(argc, argv);
  if (!strcmp(o.role, "pub")) return pub(o);
  if (!strcmp(o.role, "sub")) return sub(o);
  fprintf(stderr, "floor: --role pub|sub\n");
  return 2;
}
