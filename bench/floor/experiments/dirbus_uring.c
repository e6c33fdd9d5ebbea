/*
 * EXPERIMENT, not a floor the bench runs: does io_uring move the directory bus's floor?
 *
 * The same measurement protocol as ../dirbus.c (floor.h), with the per-message system calls
 * batched into io_uring submissions. Raw syscalls, no liburing. Built and run by hand:
 *
 *   gcc -O2 -I bench/floor -o /tmp/dirbus_uring bench/floor/experiments/dirbus_uring.c
 *   bash bench/floor/experiments/dirbus_uring.sh   (alternates the modes, prints medians)
 *
 * sub modes (--mode):
 *   plain   inotify read; per file openat + fstat + read + close (../dirbus.c's subscriber)
 *   ring3   per inotify batch: one io_uring_enter with every openat (normal fds), one with
 *           every statx(fd, "", AT_EMPTY_PATH) (the kernel always hands statx to an io-wq
 *           worker), one with every read + close (read linked to close)
 *   ring2   as ring3, but statx as a plain system call per file (no worker thread): two
 *           io_uring_enter per batch + one statx per file
 *   ring1   UNSAFE bound: openat into a direct descriptor -> read -> close, linked, every file
 *           of the batch in one io_uring_enter, no type check before the read
 * pub modes:
 *   plain   openat(O_CREAT|O_EXCL) + write + close per message (../dirbus.c's publisher)
 *   ring    per --batch messages, one io_uring_enter: openat into a direct descriptor ->
 *           write -> close, linked per message (O_CREAT opens always run on io-wq workers)
 *   ringseq as ring, with the whole batch one chain (sending order kept)
 */
#include "../floor.h"

#include <linux/io_uring.h>
#include <poll.h>
#include <stdatomic.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>

struct ring {
  int fd;
  unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
  unsigned *cq_head, *cq_tail, *cq_mask;
  struct io_uring_sqe *sqes;
  struct io_uring_cqe *cqes;
  unsigned pending;
};

static struct ring ring_new(unsigned entries) {
  struct io_uring_params p = {0};
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
  p.cq_entries = entries * 2;
  int fd = (int)syscall(__NR_io_uring_setup, entries, &p);
  if (fd < 0) die("io_uring_setup");
  size_t sqsz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  size_t cqsz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
  size_t sz = sqsz > cqsz ? sqsz : cqsz;
  if (!(p.features & IORING_FEAT_SINGLE_MMAP)) die("no single mmap");
  char *m = mmap(0, sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
  if (m == MAP_FAILED) die("mmap ring");
  struct ring r = {0};
  r.fd = fd;
  r.sq_head = (unsigned *)(m + p.sq_off.head);
  r.sq_tail = (unsigned *)(m + p.sq_off.tail);
  r.sq_mask = (unsigned *)(m + p.sq_off.ring_mask);
  r.sq_array = (unsigned *)(m + p.sq_off.array);
  r.cq_head = (unsigned *)(m + p.cq_off.head);
  r.cq_tail = (unsigned *)(m + p.cq_off.tail);
  r.cq_mask = (unsigned *)(m + p.cq_off.ring_mask);
  r.cqes = (struct io_uring_cqe *)(m + p.cq_off.cqes);
  r.sqes = mmap(0, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
  if (r.sqes == MAP_FAILED) die("mmap sqes");
  for (unsigned i = 0; i < p.sq_entries; i++) r.sq_array[i] = i;
  return r;
}

static void ring_files(struct ring *r, unsigned n) {
  int *fds = malloc(n * sizeof(int));
  for (unsigned i = 0; i < n; i++) fds[i] = -1;
  if (syscall(__NR_io_uring_register, r->fd, IORING_REGISTER_FILES, fds, n) < 0) die("register");
  free(fds);
}

static struct io_uring_sqe *sqe_get(struct ring *r) {
  unsigned tail = *r->sq_tail; /* only we write it */
  struct io_uring_sqe *s = &r->sqes[tail & *r->sq_mask];
  memset(s, 0, sizeof *s);
  atomic_store_explicit((_Atomic unsigned *)r->sq_tail, tail + 1, memory_order_release);
  r->pending++;
  return s;
}

/* Submits what is queued and waits for `wait` completions. */
static void ring_enter(struct ring *r, unsigned wait) {
  for (;;) {
    long n = syscall(__NR_io_uring_enter, r->fd, r->pending, wait, IORING_ENTER_GETEVENTS, 0, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die("io_uring_enter");
    r->pending -= (unsigned)n;
    if (!r->pending) return;
  }
}

/* Calls f for each completion. */
#define FOR_CQE(r, c, body)                                                                    \
  do {                                                                                         \
    unsigned h_ = *(r)->cq_head;                                                               \
    unsigned t_ = atomic_load_explicit((_Atomic unsigned *)(r)->cq_tail, memory_order_acquire); \
    for (; h_ != t_; h_++) {                                                                   \
      struct io_uring_cqe *c = &(r)->cqes[h_ & *(r)->cq_mask];                                 \
      body;                                                                                    \
    }                                                                                          \
    atomic_store_explicit((_Atomic unsigned *)(r)->cq_head, h_, memory_order_release);         \
  } while (0)

static const char *mode = "plain";

/* ---- publisher ---------------------------------------------------------------------------- */

static void name_of(char *out, uint64_t seq) {
  unsigned long long s = seq;
  snprintf(out, 37, "%08llx-%04llx-0000-0000-%012llx", (s >> 16) & 0xffffffffull, s & 0xffff,
           s & 0xffffffffffffull);
}

static int pub(struct opts o) {
  int dirfd = open(o.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0) die("open dir");
  long B = !strcmp(mode, "plain") ? 1 : o.batch;
  unsigned char *payloads = calloc((size_t)B, (size_t)o.size);
  char(*names)[40] = calloc((size_t)B, 40);
  struct ring r = {0};
  int seq = !strcmp(mode, "ringseq");
  if (B > 1 || strcmp(mode, "plain")) {
    r = ring_new(4096);
    ring_files(&r, (unsigned)B);
  }
  double cpu0 = cpu_ms();
  uint64_t t0 = now_ns();
  for (long i = 0; i < o.count; i += B) {
    long n = o.count - i < B ? o.count - i : B;
    if (!strcmp(mode, "plain")) {
      unsigned char *payload = payloads;
      stamp(payload, (uint64_t)i, now_ns());
      name_of(names[0], (uint64_t)i);
      int fd = openat(dirfd, names[0], O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                      0600);
      if (fd < 0) die("open");
      if (write(fd, payload, (size_t)o.size) != o.size) die("write");
      if (close(fd) < 0) die("close");
      continue;
    }
    uint64_t at = now_ns();
    for (long k = 0; k < n; k++) {
      unsigned char *payload = payloads + k * o.size;
      stamp(payload, (uint64_t)(i + k), at);
      name_of(names[k], (uint64_t)(i + k));
      struct io_uring_sqe *s = sqe_get(&r);
      s->opcode = IORING_OP_OPENAT;
      s->fd = dirfd;
      s->addr = (uint64_t)(uintptr_t)names[k];
      s->open_flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW;
      s->len = 0600;
      s->file_index = (unsigned)k + 1;
      s->flags = IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
      s = sqe_get(&r);
      s->opcode = IORING_OP_WRITE;
      s->fd = (int)k;
      s->addr = (uint64_t)(uintptr_t)payload;
      s->len = (unsigned)o.size;
      s->off = 0;
      s->flags = IOSQE_FIXED_FILE | IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
      s = sqe_get(&r);
      s->opcode = IORING_OP_CLOSE;
      s->file_index = (unsigned)k + 1;
      s->user_data = 1;
      if (seq && k + 1 < n) s->flags = IOSQE_IO_LINK;
    }
    ring_enter(&r, (unsigned)n);
    long got = 0;
    FOR_CQE(&r, c, {
      if (c->res < 0) {
        errno = -c->res;
        die("ring op");
      }
      got++;
    });
    if (got != n) {
      fprintf(stderr, "got %ld of %ld\n", got, n);
      exit(1);
    }
  }
  pub_report(o.count, t0, cpu0, 0);
  return 0;
}

/* ---- subscriber ----------------------------------------------------------------------------- */

#define MAXB 2048
static int fds[MAXB];
static struct statx stx[MAXB];
static long sizes[MAXB];
static unsigned char *bufs;
static const long SLOT = 4096;

/* Reads the batch's files through the ring; returns 1 when the tally is complete. */
static int take_ring(struct tally *t, struct ring *r, int dirfd, char **names, int n) {
  const int oflags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
  int done = 0;
  if (!strcmp(mode, "ring1")) {
    for (int i = 0; i < n; i++) {
      struct io_uring_sqe *s = sqe_get(r);
      s->opcode = IORING_OP_OPENAT;
      s->fd = dirfd;
      s->addr = (uint64_t)(uintptr_t)names[i];
      s->open_flags = oflags & ~O_CLOEXEC;
      s->file_index = (unsigned)i + 1;
      s->flags = IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
      s = sqe_get(r);
      s->opcode = IORING_OP_READ;
      s->fd = i;
      s->addr = (uint64_t)(uintptr_t)(bufs + (long)i * SLOT);
      s->len = (unsigned)SLOT;
      /* a hard link: a short read (every read here) would cancel a soft link's close */
      s->flags = IOSQE_FIXED_FILE | IOSQE_IO_HARDLINK;
      s->user_data = (uint64_t)i;
      s = sqe_get(r);
      s->opcode = IORING_OP_CLOSE;
      s->file_index = (unsigned)i + 1;
      s->flags = IOSQE_CQE_SKIP_SUCCESS;
      s->user_data = ~0ull;
    }
    ring_enter(r, (unsigned)n);
    for (int i = 0; i < n; i++) sizes[i] = -1;
    FOR_CQE(r, c, {
      if (c->user_data < MAXB) sizes[c->user_data] = c->res;
    });
  } else {
    for (int i = 0; i < n; i++) {
      struct io_uring_sqe *s = sqe_get(r);
      s->opcode = IORING_OP_OPENAT;
      s->fd = dirfd;
      s->addr = (uint64_t)(uintptr_t)names[i];
      s->open_flags = oflags;
      s->user_data = (uint64_t)i;
    }
    ring_enter(r, (unsigned)n);
    FOR_CQE(r, c, { fds[c->user_data] = c->res; });
    int want = 0;
    if (!strcmp(mode, "ring3")) {
      for (int i = 0; i < n; i++) {
        if (fds[i] < 0) continue;
        struct io_uring_sqe *s = sqe_get(r);
        s->opcode = IORING_OP_STATX;
        s->fd = fds[i];
        s->addr = (uint64_t)(uintptr_t)"";
        s->statx_flags = AT_EMPTY_PATH;
        s->len = STATX_BASIC_STATS;
        s->off = (uint64_t)(uintptr_t)&stx[i];
        s->user_data = (uint64_t)i;
        want++;
      }
      ring_enter(r, (unsigned)want);
      FOR_CQE(r, c, {
        if (c->res < 0) stx[c->user_data].stx_mode = 0;
      });
    } else {
      for (int i = 0; i < n; i++) {
        if (fds[i] < 0) continue;
        if (syscall(__NR_statx, fds[i], "", AT_EMPTY_PATH, STATX_BASIC_STATS, &stx[i]) < 0) {
          stx[i].stx_mode = 0;
        }
      }
    }
    want = 0;
    for (int i = 0; i < n; i++) {
      sizes[i] = -1;
      if (fds[i] < 0) continue;
      struct io_uring_sqe *s;
      if (S_ISREG(stx[i].stx_mode) && stx[i].stx_nlink > 0 &&
          (long)stx[i].stx_size < SLOT) {
        s = sqe_get(r);
        s->opcode = IORING_OP_READ;
        s->fd = fds[i];
        s->addr = (uint64_t)(uintptr_t)(bufs + (long)i * SLOT);
        s->len = (unsigned)stx[i].stx_size + 1;
        s->user_data = (uint64_t)i;
        want++;
      }
      /* not linked: the read took its reference to the file when it was submitted */
      s = sqe_get(r);
      s->opcode = IORING_OP_CLOSE;
      s->fd = fds[i];
      s->flags = IOSQE_CQE_SKIP_SUCCESS;
      s->user_data = ~0ull;
    }
    ring_enter(r, (unsigned)want);
    FOR_CQE(r, c, {
      if (c->user_data < MAXB) sizes[c->user_data] = c->res;
    });
  }
  uint64_t at = now_ns();
  for (int i = 0; i < n && !done; i++) {
    if (sizes[i] >= 16) done = tally_add(t, bufs + (long)i * SLOT, at);
  }
  return done;
}

static int sub(struct opts o) {
  int dirfd;
  int in = watch_bus(o.path, &dirfd);
  struct tally t = tally_new(o.count, o.warmup);
  long cap = 1 << 20;
  unsigned char *buf = malloc((size_t)cap);
  bufs = malloc((size_t)(MAXB * SLOT));
  memset(bufs, 0, (size_t)(MAXB * SLOT)); /* faulted in before the measurement */
  int plain = !strcmp(mode, "plain");
  struct ring r = {0};
  if (!plain) {
    r = ring_new(8192);
    ring_files(&r, MAXB);
  }
  static char ev[1 << 16] __attribute__((aligned(8)));
  char *names[MAXB];
  long batches = 0, files = 0;
  ready();
  int done = 0;
  while (!done) {
    struct pollfd pfd = {in, POLLIN, 0};
    int rc = poll(&pfd, 1, t.received ? (int)o.idle_ms : 60000);
    if (rc == 0) break;
    ssize_t n = read(in, ev, sizeof ev);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("read inotify");
    }
    int k = 0;
    for (char *p = ev; p < ev + n && !done;) {
      struct inotify_event *e = (struct inotify_event *)p;
      p += sizeof *e + e->len;
      if (e->mask & IN_Q_OVERFLOW) {
        fprintf(stderr, "overflow: not handled in the experiment\n");
        exit(1);
      }
      if (e->len == 0 || e->name[0] == '.') continue;
      if (plain) done = take_file(&t, dirfd, e->name, buf, cap);
      else names[k++] = e->name;
    }
    if (!plain && k) {
      batches++;
      files += k;
      done = take_ring(&t, &r, dirfd, names, k);
    }
  }
  sub_report(&t);
  if (batches) fprintf(stderr, "batches %ld, files per batch %.1f\n", batches, (double)files / batches);
  return 0;
}

int main(int argc, char **argv) {
  /* --mode M first, then the floor's options */
  if (argc > 2 && !strcmp(argv[1], "--mode")) {
    mode = argv[2];
    argv[2] = argv[0];
    argv += 2;
    argc -= 2;
  }
  struct opts o = parse(argc, argv);
  if (!strcmp(o.role, "pub")) return pub(o);
  if (!strcmp(o.role, "sub")) return sub(o);
  fprintf(stderr, "dirbus_uring: --role pub|sub\n");
  return 2;
}
