/*
 * The directory bus floor: what the kernel allows for one file per message.
 *
 * pub: for each message, openat(DIR's fd, NAME, O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC),
 *      write the payload, close (one IN_CLOSE_WRITE), as fsbus's publisher does. NAME is 36
 *      characters, as fsbus's UUIDv7s, and sorts in sending order.
 * sub: inotify on DIR (IN_CLOSE_WRITE | IN_MOVED_TO), blocking read(2) of the event queue;
 *      for each event open(O_RDONLY|O_NOFOLLOW|O_NONBLOCK), fstat, read, close: the calls
 *      fsbus's subscriber makes. On IN_Q_OVERFLOW it lists DIR and reads, in name order,
 *      every message it has not seen, so the floor is lossless too.
 *
 *   dirbus --role sub --path DIR --count N [--warmup W] [--idle-ms MS]
 *   dirbus --role pub --path DIR --count N --size S [--rate R]
 */
#include "floor.h"

#include <dirent.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>

static void name_of(char *out, uint64_t seq) {
  /* 36 characters in a UUID's shape (but not a UUIDv7: fsbus would read a time from that);
   * the first 12 hex digits are the sequence number, so names sort in sending order. */
  unsigned long long s = seq;
  snprintf(out, 37, "%08llx-%04llx-0000-0000-%012llx", (s >> 16) & 0xffffffffull, s & 0xffff,
           s & 0xffffffffffffull);
}

static int pub(struct opts o) {
  unsigned char *payload = calloc(1, (size_t)o.size);
  char name[40];
  int dirfd = open(o.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0) die("open dir");
  struct pacer p = pacer_new(o.rate);
  double cpu0 = cpu_ms();
  uint64_t t0 = now_ns();
  for (long i = 0; i < o.count; i++) {
    uint64_t at = pacer_wait(&p, i);
    stamp(payload, (uint64_t)i, at);
    name_of(name, (uint64_t)i);
    int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) die("open");
    for (ssize_t off = 0; off < o.size;) {
      ssize_t n = write(fd, payload + off, (size_t)(o.size - off));
      if (n < 0) die("write");
      off += n;
    }
    if (close(fd) < 0) die("close");
  }
  pub_report(o.count, t0, cpu0, p.max_lag_us);
  return 0;
}

static int cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* After an overflow: every file in DIR not yet seen, in name (= sending) order. */
static int rescan(struct tally *t, int dirfd, const char *dir, unsigned char *buf, long cap) {
  DIR *d = opendir(dir);
  if (!d) die("opendir");
  size_t n = 0, capn = 1024;
  char **names = malloc(capn * sizeof *names);
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    unsigned long long seq = strtoull(e->d_name + 24, NULL, 16);
    if (seq < (unsigned long long)t->count && t->seen[seq]) continue;
    if (n == capn) names = realloc(names, (capn *= 2) * sizeof *names);
    names[n++] = strdup(e->d_name);
  }
  closedir(d);
  qsort(names, n, sizeof *names, cmp);
  int done = 0;
  for (size_t i = 0; i < n; i++) {
    if (!done) done = take_file(t, dirfd, names[i], buf, cap);
    free(names[i]);
  }
  free(names);
  return done;
}

static int sub(struct opts o) {
  int dirfd;
  int in = watch_bus(o.path, &dirfd);
  struct tally t = tally_new(o.count, o.warmup);
  long cap = 1 << 20;
  unsigned char *buf = malloc((size_t)cap);
  static char ev[1 << 16] __attribute__((aligned(8)));
  ready();
  int done = 0;
  while (!done) {
    struct pollfd pfd = {in, POLLIN, 0};
    int r = poll(&pfd, 1, t.received ? (int)o.idle_ms : 60000);
    if (r == 0) break; /* idle: the publisher is done and something was lost */
    ssize_t n = read(in, ev, sizeof ev);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("read inotify");
    }
    for (char *p = ev; p < ev + n && !done;) {
      struct inotify_event *e = (struct inotify_event *)p;
      p += sizeof *e + e->len;
      if (e->mask & IN_Q_OVERFLOW) {
        t.overflows++;
        done = rescan(&t, dirfd, o.path, buf, cap);
        continue;
      }
      if (e->len == 0 || e->name[0] == '.') continue;
      done = take_file(&t, dirfd, e->name, buf, cap);
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
