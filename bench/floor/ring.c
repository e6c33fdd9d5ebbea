/*
 * The fanout floor: a shared-memory ring of fixed-size records with a futex wake-up.
 *
 * The ring file (PATH, on tmpfs) holds a 64-byte header (u64 head: records published so far;
 * u32 wake word: the low half of head, the futex; u32 sleepers flag) and then SLOTS records.
 * pub: copies BATCH records into their slots, publishes head (release), and wakes the
 *      readers with FUTEX_WAKE only when one said it was going to sleep. It never waits for
 *      readers; a reader that falls a whole ring behind counts an overrun and skips ahead.
 * sub: takes every record up to head; when caught up, raises the sleepers flag, looks at head
 *      again, and FUTEX_WAITs on the wake word.
 *
 *   ring --role init --path FILE --count SLOTS --size S      (makes the ring file)
 *   ring --role sub --path FILE --count N --size S [--warmup W]
 *   ring --role pub --path FILE --count N --size S [--rate R] [--batch B]
 */
#include "floor.h"

#include <linux/futex.h>
#include <poll.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>

struct header {
  _Atomic uint64_t head;
  _Atomic uint32_t wake;
  _Atomic uint32_t sleepers;
  uint64_t slots, size;
};

static struct header *map(const char *path, long *slots_out, long size) {
  int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) die("open ring");
  struct stat st;
  if (fstat(fd, &st) < 0) die("fstat");
  void *m = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) die("mmap");
  close(fd);
  *slots_out = (long)((st.st_size - 64) / size);
  return m;
}

static long futex(_Atomic uint32_t *addr, int op, uint32_t val, const struct timespec *ts) {
  return syscall(SYS_futex, addr, op, val, ts, NULL, 0);
}

static int init(struct opts o) {
  int fd = open(o.path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) die("create ring");
  if (ftruncate(fd, 64 + (off_t)o.count * o.size) < 0) die("ftruncate");
  close(fd);
  return 0;
}

static int pub(struct opts o) {
  long slots;
  struct header *h = map(o.path, &slots, o.size);
  unsigned char *ring = (unsigned char *)h + 64;
  long batch = o.rate > 0 ? 1 : o.batch;
  struct pacer p = pacer_new(o.rate);
  unsigned char *rec = calloc(1, (size_t)o.size);
  double cpu0 = cpu_ms();
  uint64_t t0 = now_ns();
  for (long i = 0; i < o.count; i += batch) {
    long n = o.count - i < batch ? o.count - i : batch;
    uint64_t at = pacer_wait(&p, i);
    for (long k = 0; k < n; k++) {
      unsigned char *slot = ring + ((i + k) % slots) * o.size;
      stamp(rec, (uint64_t)(i + k), at);
      memcpy(slot, rec, (size_t)o.size);
    }
    uint64_t head = (uint64_t)(i + n);
    atomic_store(&h->head, head);
    atomic_store(&h->wake, (uint32_t)head);
    if (atomic_exchange(&h->sleepers, 0)) futex(&h->wake, FUTEX_WAKE, INT32_MAX, NULL);
  }
  pub_report(o.count, t0, cpu0, p.max_lag_us);
  return 0;
}

static int sub(struct opts o) {
  long slots;
  struct header *h = map(o.path, &slots, o.size);
  unsigned char *ring = (unsigned char *)h + 64;
  unsigned char *copy = malloc((size_t)o.size);
  struct tally t = tally_new(o.count, o.warmup);
  uint64_t tail = atomic_load(&h->head);
  ready();
  int done = 0;
  uint64_t idle_since = 0;
  while (!done) {
    uint64_t head = atomic_load(&h->head);
    if (head - tail > (uint64_t)slots) {
      t.overflows++;
      tail = head - (uint64_t)slots;
    }
    if (tail < head) {
      uint64_t at = now_ns();
      for (; tail < head && !done; tail++) {
        memcpy(copy, ring + (tail % (uint64_t)slots) * (uint64_t)o.size, (size_t)o.size);
        done = tally_add(&t, copy, at);
      }
      idle_since = 0;
      continue;
    }
    atomic_store(&h->sleepers, 1);
    uint32_t w = atomic_load(&h->wake);
    if (atomic_load(&h->head) != tail) continue;
    struct timespec ts = {0, 100000000}; /* 100 ms, to notice the end */
    futex(&h->wake, FUTEX_WAIT, w, &ts);
    if (atomic_load(&h->head) == tail) {
      uint64_t now = now_ns();
      if (!idle_since) idle_since = now;
      if (now - idle_since > (uint64_t)(t.received ? o.idle_ms : 60000) * 1000000ull) break;
    }
  }
  sub_report(&t);
  return 0;
}

int main(int argc, char **argv) {
  struct opts o = parse(argc, argv);
  if (!strcmp(o.role, "init")) return init(o);
  if (!strcmp(o.role, "pub")) return pub(o);
  if (!strcmp(o.role, "sub")) return sub(o);
  fprintf(stderr, "floor: --role init|pub|sub\n");
  return 2;
}
