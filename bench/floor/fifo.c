/*
 * The FIFO floor: one kernel hop between two processes, fixed-size records.
 *
 * pub: open FIFO for writing, write each record (BATCH records per write(2) when unpaced).
 * sub: open FIFO for reading, read(2) into a large buffer, count whole records.
 *
 *   fifo --role sub --path FIFO --count N [--size S] [--warmup W]
 *   fifo --role pub --path FIFO --count N --size S [--rate R] [--batch B]
 */
#include "floor.h"

static int pub(struct opts o) {
  long batch = o.rate > 0 ? 1 : o.batch;
  unsigned char *buf = calloc((size_t)batch, (size_t)o.size);
  int fd = open(o.path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) die("open fifo");
  struct pacer p = pacer_new(o.rate);
  double cpu0 = cpu_ms();
  uint64_t t0 = now_ns();
  for (long i = 0; i < o.count; i += batch) {
    long n = o.count - i < batch ? o.count - i : batch;
    uint64_t at = pacer_wait(&p, i);
    for (long k = 0; k < n; k++) stamp(buf + k * o.size, (uint64_t)(i + k), at);
    size_t len = (size_t)(n * o.size);
    for (size_t off = 0; off < len;) {
      ssize_t w = write(fd, buf + off, len - off);
      if (w < 0) die("write");
      off += (size_t)w;
    }
  }
  pub_report(o.count, t0, cpu0, p.max_lag_us);
  close(fd);
  return 0;
}

static int sub(struct opts o) {
  ready(); /* the open below waits for the writer */
  int fd = open(o.path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) die("open fifo");
  struct tally t = tally_new(o.count, o.warmup);
  size_t cap = (size_t)o.size * 256;
  unsigned char *buf = malloc(cap);
  size_t have = 0;
  int done = 0;
  while (!done) {
    ssize_t n = read(fd, buf + have, cap - have);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    have += (size_t)n;
    uint64_t at = now_ns();
    size_t off = 0;
    while (have - off >= (size_t)o.size && !done) {
      done = tally_add(&t, buf + off, at);
      off += (size_t)o.size;
    }
    memmove(buf, buf + off, have - off);
    have -= off;
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
