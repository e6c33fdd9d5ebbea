/*
 * The floor programs' shared part: the bench's measurement protocol in C.
 *
 * - One clock: CLOCK_MONOTONIC nanoseconds in the first 8 bytes of each payload (little
 *   endian), then the per-publisher sequence number (u64), as bench/_lib.ts stamp() does.
 * - Open-loop pacing: message i is due at start + i / rate; the publisher sleeps (absolute
 *   clock_nanosleep) to within a short spin of its due time, and stamps the due time, so a
 *   late send shows as latency. rate 0: unpaced, stamped with the actual send time.
 * - Subscribers print "ready" once watching, then one JSON line that sums up what they saw
 *   (a few hundred bytes, however many messages: the 8-reader, 2M-message points stay cheap):
 *   {"received","distinct","duplicates","order","counted","overflows","cpu_ms","first_ns",
 *    "last_ns","lat_hist":[[t,n],...]}
 *   where duplicates are sequence numbers seen before, order counts arrivals below the one
 *   before, counted is arrivals with seq >= warmup, and lat_hist is the latency distribution
 *   (only seq >= warmup) as sorted [tenths of a µs, count] pairs, exact below 1 ms and to four
 *   significant digits above; publishers print {"sent","elapsed_ns","cpu_ms","max_lag_us"}.
 * - CPU time: user + system ticks from /proc/self/stat (USER_HZ = 100), as the bench reads
 *   it for Deno processes.
 *
 * Options are --key value pairs: --role pub|sub, --path, --count, --size, --rate, --warmup,
 * --batch, --idle-ms.
 */
#ifndef FLOOR_H
#define FLOOR_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
  fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
  exit(1);
}

/* CPU time (user + system) of this process in milliseconds, from /proc/self/stat. */
static double cpu_ms(void) {
  char buf[1024];
  int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (!p) return -1;
  p += 2; /* fields from the third on: state is field 3, utime 14, stime 15 */
  unsigned long long ut = 0, st = 0;
  int field = 3;
  for (char *tok = strtok(p, " "); tok; tok = strtok(NULL, " "), field++) {
    if (field == 14) ut = strtoull(tok, NULL, 10);
    if (field == 15) {
      st = strtoull(tok, NULL, 10);
      break;
    }
  }
  return (double)(ut + st) * 10.0;
}

static inline void put_u64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static inline uint64_t get_u64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}
static inline void stamp(unsigned char *payload, uint64_t seq, uint64_t ns) {
  put_u64(payload, ns);
  put_u64(payload + 8, seq);
}

/* ---- options ------------------------------------------------------------------------------ */

struct opts {
  const char *role, *path;
  long count, size, rate, warmup, batch, idle_ms, subs, spin_us;
};

static struct opts parse(int argc, char **argv) {
  struct opts o = {"", "", 0, 1024, 0, 1000, 1, 5000, 1, 0};
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    if (!strcmp(k, "--role")) o.role = v;
    else if (!strcmp(k, "--path")) o.path = v;
    else if (!strcmp(k, "--count")) o.count = atol(v);
    else if (!strcmp(k, "--size")) o.size = atol(v);
    else if (!strcmp(k, "--rate")) o.rate = atol(v);
    else if (!strcmp(k, "--warmup")) o.warmup = atol(v);
    else if (!strcmp(k, "--batch")) o.batch = atol(v);
    else if (!strcmp(k, "--idle-ms")) o.idle_ms = atol(v);
    else if (!strcmp(k, "--subscribers")) o.subs = atol(v);
    else if (!strcmp(k, "--spin-us")) o.spin_us = atol(v);
    else {
      fprintf(stderr, "floor: unknown option %s\n", k);
      exit(2);
    }
  }
  if (o.size < 16) o.size = 16;
  if (o.batch < 1) o.batch = 1;
  return o;
}

/* ---- the publisher's pacing ---------------------------------------------------------------- */

struct pacer {
  long rate;
  uint64_t start, interval, spin;
  double max_lag_us;
};

static struct pacer pacer_new(long rate) {
  struct pacer p = {rate, now_ns() + 1000000ull, rate > 0 ? 1000000000ull / rate : 0, 0, 0};
  /* Spin at most a quarter of the interval (150 µs at most), as bench/_lib.ts paced() does. */
  uint64_t q = rate > 0 ? 250000000ull / rate : 0;
  p.spin = q < 150000 ? q : 150000;
  return p;
}

/* Waits until message i is due and returns the time to stamp: the due time when paced, now
 * when unpaced. */
static uint64_t pacer_wait(struct pacer *p, long i) {
  if (p->rate <= 0) return now_ns();
  uint64_t due = p->start + (uint64_t)i * p->interval;
  uint64_t t = now_ns();
  if (t + p->spin < due) {
    uint64_t wake = due - p->spin;
    struct timespec ts = {(time_t)(wake / 1000000000ull), (long)(wake % 1000000000ull)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
  }
  while ((t = now_ns()) < due) {
  }
  double lag = (double)(t - due) / 1000.0;
  if (lag > p->max_lag_us) p->max_lag_us = lag;
  return due;
}

static void pub_report(long sent, uint64_t t0, double cpu0, double max_lag_us) {
  printf("{\"sent\":%ld,\"elapsed_ns\":%llu,\"cpu_ms\":%.1f,\"max_lag_us\":%.1f}\n", sent,
         (unsigned long long)(now_ns() - t0), cpu_ms() - cpu0, max_lag_us);
  fflush(stdout);
}

/* ---- the subscriber's tally ---------------------------------------------------------------- */

struct tally {
  long count, warmup, received, nlat, overflows;
  int64_t *lat; /* latencies in tenths of a microsecond, seq >= warmup */
  uint64_t first_ns, last_ns;
  double cpu0;
  unsigned char *seen; /* one byte per sequence number: distinct and duplicates */
  long distinct, duplicates, order, counted;
  uint64_t last_seq;
};

static struct tally tally_new(long count, long warmup) {
  struct tally t = {0};
  t.count = count;
  t.warmup = warmup;
  t.lat = malloc(sizeof(int64_t) * (size_t)(count + 16));
  t.seen = calloc((size_t)count + 1, 1);
  if (!t.lat || !t.seen) die("malloc");
  t.cpu0 = cpu_ms();
  return t;
}

/* Counts one payload received at `at`. Returns 1 once every sequence number has been seen. */
static int tally_add(struct tally *t, const unsigned char *payload, uint64_t at) {
  uint64_t sent = get_u64(payload), seq = get_u64(payload + 8);
  if (t->received == 0) t->first_ns = at;
  else if (seq < t->last_seq) t->order++;
  t->last_seq = seq;
  t->last_ns = at;
  t->received++;
  if (seq >= (uint64_t)t->warmup) {
    t->counted++;
    if (t->nlat < t->count + 16) {
      /* Rounded to 0.1 µs, as the bench's own percentiles are. */
      int64_t d = (int64_t)(at - sent);
      t->lat[t->nlat++] = d >= 0 ? (d + 50) / 100 : -((-d + 50) / 100);
    }
  }
  if (seq < (uint64_t)t->count) {
    if (t->seen[seq]) t->duplicates++;
    else {
      t->seen[seq] = 1;
      t->distinct++;
    }
  } else {
    t->duplicates++; /* never sent: as wrong as a duplicate */
  }
  return t->distinct >= t->count;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

/* Keeps four significant digits of a latency in tenths of a µs (exact below 1 ms). */
static int64_t coarse(int64_t v) {
  int64_t scale = 1, a = v < 0 ? -v : v;
  while (a >= 10000) {
    a /= 10;
    scale *= 10;
  }
  return (v < 0 ? -a : a) * scale;
}

/* A directory bus subscriber's start: an inotify instance watching DIR for files closed after
 * writing and files renamed in, and DIR's own descriptor for the opens. */
static inline int watch_bus(const char *path, int *dirfd) {
  int in = inotify_init1(IN_CLOEXEC);
  if (in < 0) die("inotify_init1");
  if (inotify_add_watch(in, path, IN_CLOSE_WRITE | IN_MOVED_TO | IN_ONLYDIR) < 0) {
    die("inotify_add_watch");
  }
  *dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (*dirfd < 0) die("open dir");
  return in;
}

/* A directory bus subscriber reads one message file as fsbus does (no symlink followed, a
 * regular file no larger than cap, read whole); returns 1 when the tally is complete. */
static inline int take_file(struct tally *t, int dirfd, const char *name, unsigned char *buf, long cap) {
  int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) return 0;
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > cap) {
    close(fd);
    return 0;
  }
  ssize_t n = read(fd, buf, (size_t)st.st_size);
  close(fd);
  if (n < 16) return 0;
  return tally_add(t, buf, now_ns());
}

static void ready(void) {
  fputs("ready\n", stdout);
  fflush(stdout);
}

static void sub_report(struct tally *t) {
  double cpu = cpu_ms() - t->cpu0;
  printf("{\"received\":%ld,\"distinct\":%ld,\"duplicates\":%ld,\"order\":%ld,\"counted\":%ld,"
         "\"overflows\":%ld,\"cpu_ms\":%.1f,\"first_ns\":%llu,\"last_ns\":%llu,\"lat_hist\":[",
         t->received, t->distinct, t->duplicates, t->order, t->counted, t->overflows, cpu,
         (unsigned long long)t->first_ns, (unsigned long long)t->last_ns);
  for (long i = 0; i < t->nlat; i++) t->lat[i] = coarse(t->lat[i]);
  qsort(t->lat, (size_t)t->nlat, sizeof *t->lat, cmp_i64);
  for (long i = 0, first = 1; i < t->nlat;) {
    long j = i;
    while (j < t->nlat && t->lat[j] == t->lat[i]) j++;
    printf(first ? "[%lld,%ld]" : ",[%lld,%ld]", (long long)t->lat[i], j - i);
    first = 0;
    i = j;
  }
  fputs("]}\n", stdout);
  fflush(stdout);
}

#endif
