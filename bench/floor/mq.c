/*
 * The mq floor: an append-only stream file plus a fixed-size index record per message.
 *
 * pub: for each message, write(2) the payload to DIR/data (O_APPEND), then pwrite(2) a
 *      64-byte committed record (state, offset, length, sequence) at 4096 + seq * 64 in
 *      DIR/index.
 * sub: inotify IN_MODIFY on DIR/index; after each wake-up, pread(2) the next records while
 *      they are committed, and pread(2) each message from DIR/data.
 *
 *   mq --role sub --path DIR --count N [--warmup W] [--idle-ms MS]   (makes the two files)
 *   mq --role pub --path DIR --count N --size S [--rate R]
 */
#include "floor.h"

#include <poll.h>
#include <sys/inotify.h>

#define HEADER 4096
#define RECORD 64

static int pub(struct opts o) {
  char path[4096];
  unsigned char *payload = calloc(1, (size_t)o.size);
  snprintf(path, sizeof path, "%s/data", o.path);
  int data = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
  snprintf(path, sizeof path, "%s/index", o.path);
  int index = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
  if (data < 0 || index < 0) die("open");
  unsigned char rec[RECORD];
  uint64_t offset = 0;
  struct pacer p = pacer_new(o.rate);
  double cpu0 = cpu_ms();
  uint64_t t0 = now_ns();
  for (long i = 0; i < o.count; i++) {
    uint64_t at = pacer_wait(&p, i);
    stamp(payload, (uint64_t)i, at);
    if (write(data, payload, (size_t)o.size) != o.size) die("write data");
    memset(rec, 0, sizeof rec);
    rec[0] = 1;
    put_u64(rec + 8, (uint64_t)i);
    put_u64(rec + 16, offset);
    put_u64(rec + 24, (uint64_t)o.size);
    if (pwrite(index, rec, RECORD, HEADER + (off_t)i * RECORD) != RECORD) die("write index");
    offset += (uint64_t)o.size;
  }
  pub_report(o.count, t0, cpu0, p.max_lag_us);
  return 0;
}

static int sub(struct opts o) {
  char path[4096];
  snprintf(path, sizeof path, "%s/data", o.path);
  int data = open(path, O_RDONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
  snprintf(path, sizeof path, "%s/index", o.path);
  int index = open(path, O_RDONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (data < 0 || index < 0) die("open");
  int in = inotify_init1(IN_CLOEXEC);
  if (in < 0 || inotify_add_watch(in, path, IN_MODIFY) < 0) die("inotify");
  struct tally t = tally_new(o.count, o.warmup);
  unsigned char *buf = malloc(1 << 20);
  unsigned char rec[RECORD];
  static char ev[1 << 14] __attribute__((aligned(8)));
  long next = 0;
  ready();
  int done = 0;
  while (!done) {
    /* Take every committed record, then sleep until the index changes. */
    while (!done && pread(index, rec, RECORD, HEADER + (off_t)next * RECORD) == RECORD &&
           rec[0] == 1) {
      uint64_t off = get_u64(rec + 16), len = get_u64(rec + 24);
      if (len > (1 << 20) || pread(data, buf, len, (off_t)off) != (ssize_t)len) break;
      if (len >= 16) done = tally_add(&t, buf, now_ns());
      next++;
    }
    if (done) break;
    struct pollfd pfd = {in, POLLIN, 0};
    if (poll(&pfd, 1, t.received ? (int)o.idle_ms : 60000) == 0) break;
    if (read(in, ev, sizeof ev) < 0 && errno != EINTR) die("read inotify");
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
