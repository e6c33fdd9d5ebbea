/*
 * The FUSE floor: the smallest server of one message stream through /dev/fuse, in C, with
 * no library, for the mounted mq points (bench/mq.ts). It mounts MOUNTPOINT (as root) with
 * one file, "s", with the mount's semantics: each write(2) is one message, each read(2)
 * returns one message (replay off: the messages written after the open) and blocks until
 * there is one; opening with O_TRUNC and closing without a write is end of file. One thread,
 * blocking read(2) of one request at a time, replies with one writev(2): what any FUSE
 * server must do per message, and nothing else.
 *
 *   fuse --role serve --path MOUNTPOINT [--spin-us N]
 *
 * --spin-us N (an extra point, not the plain floor): while requests come fast, when the
 * device is empty, keep trying a non-blocking read for up to N µs after the last request
 * before blocking in poll(2), so this vCPU does not go idle between a writer's back-to-back
 * writes. Costs up to N µs of CPU after each burst, none while no requests come.
 *
 * Prints "ready" once mounted; on SIGTERM or SIGINT unmounts and exits.
 */
#pragma GCC diagnostic ignored "-Wunused-function" /* the pub/sub parts of floor.h */
#include "floor.h"

#include <linux/fuse.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>

#define STREAM_NODE 2
#define RING (1 << 18) /* messages kept: more than any run writes, so a slow reader never
                          * loses one (the mount keeps every message, on disk) */
#define MAX_WRITE (1 << 20)
#define MAX_OPEN 1024
#define MAX_PARKED 256

struct msg {
  uint32_t len;
  unsigned char *data;
};

struct file {
  int used, trunc, wrote;
  uint64_t next; /* the next message this open reads */
};

struct parked {
  uint64_t unique, fh;
  uint32_t size;
};

static int dev = -1;
static const char *mountpoint;
static struct msg ring[RING];
static uint64_t head; /* messages written so far */
static struct file files[MAX_OPEN];
static struct parked parked[MAX_PARKED];
static int nparked;
static volatile sig_atomic_t stopping;

static void reply(uint64_t unique, int error, const void *body, size_t len) {
  struct fuse_out_header h = {.len = (uint32_t)(sizeof h + (error ? 0 : len)),
                              .error = error,
                              .unique = unique};
  struct iovec iov[2] = {{&h, sizeof h}, {(void *)body, error ? 0 : len}};
  while (writev(dev, iov, 2) < 0 && errno == EINTR) {
  }
}

static void attr_of(uint64_t node, struct fuse_attr *a) {
  memset(a, 0, sizeof *a);
  a->ino = node;
  a->mode = node == FUSE_ROOT_ID ? S_IFDIR | 0755 : S_IFREG | 0666;
  a->nlink = node == FUSE_ROOT_ID ? 2 : 1;
  a->blksize = 4096;
}

/* Answers a parked read of `fh` if its next message is there; returns whether it did. */
static int answer(struct parked *p) {
  struct file *f = &files[p->fh];
  if (f->next >= head) return 0;
  if (head - f->next > RING) f->next = head - RING; /* overrun: skip to the oldest kept */
  struct msg *m = &ring[f->next % RING];
  f->next++;
  reply(p->unique, 0, m->data, m->len < p->size ? m->len : p->size);
  return 1;
}

static void publish(const unsigned char *data, uint32_t len) {
  struct msg *m = &ring[head % RING];
  m->data = realloc(m->data, len ? len : 1);
  memcpy(m->data, data, len);
  m->len = len;
  head++;
  int k = 0;
  for (int i = 0; i < nparked; i++) {
    if (!answer(&parked[i])) parked[k++] = parked[i];
  }
  nparked = k;
}

/*
 * Reads one request. Plain (spin_ns 0): one blocking read(2). Spinning: the device is
 * non-blocking; when it is empty less than `spin_ns` after the last request, and requests
 * come fast (the last two waits in poll(2) were shorter than 4 × spin_ns, or the last spin
 * caught one), read again until `spin_ns` has passed since it came, then block in poll(2).
 */
static uint64_t last_request;
static int short_waits;
static ssize_t next_request(unsigned char *buf, size_t cap, uint64_t spin_ns) {
  if (!spin_ns) return read(dev, buf, cap);
  for (;;) {
    ssize_t n = read(dev, buf, cap);
    if (n >= 0 || errno != EAGAIN) {
      if (n >= 0) last_request = now_ns();
      return n;
    }
    if (short_waits >= 2 && now_ns() - last_request < spin_ns) continue;
    struct pollfd p = {.fd = dev, .events = POLLIN};
    uint64_t from = now_ns();
    if (poll(&p, 1, -1) < 0 && errno != EINTR) return -1;
    short_waits = now_ns() - from < 4 * spin_ns ? short_waits + 1 : 0;
  }
}

static void on_signal(int sig) {
  (void)sig;
  stopping = 1;
  umount2(mountpoint, MNT_DETACH);
}

static int serve(struct opts o) {
  mountpoint = o.path;
  dev = open("/dev/fuse", O_RDWR | O_CLOEXEC | (o.spin_us > 0 ? O_NONBLOCK : 0));
  if (dev < 0) die("open /dev/fuse");
  char data[128];
  snprintf(data, sizeof data, "fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other", dev);
  if (mount("fsbus-floor", o.path, "fuse.fsbus-floor", MS_NOSUID | MS_NODEV, data) < 0) {
    die("mount");
  }
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  ready();
  size_t cap = MAX_WRITE + 4096;
  unsigned char *buf = malloc(cap);
  uint64_t next_fh = 0;
  for (;;) {
    ssize_t n = next_request(buf, cap, (uint64_t)o.spin_us * 1000);
    if (n < 0) {
      if (errno == EINTR || errno == ENOENT || errno == EAGAIN) continue;
      if (errno == ENODEV) break; /* unmounted */
      die("read /dev/fuse");
    }
    if ((size_t)n < sizeof(struct fuse_in_header)) continue;
    struct fuse_in_header *in = (void *)buf;
    void *arg = buf + sizeof *in;
    uint64_t u = in->unique;
    switch (in->opcode) {
    case FUSE_INIT: {
      struct fuse_init_in *i = arg;
      struct fuse_init_out out = {.major = FUSE_KERNEL_VERSION,
                                  .minor = FUSE_KERNEL_MINOR_VERSION,
                                  .max_readahead = i->max_readahead,
                                  .flags = i->flags & (FUSE_ASYNC_READ | FUSE_ATOMIC_O_TRUNC |
                                                       FUSE_BIG_WRITES | FUSE_MAX_PAGES),
                                  .max_background = 16,
                                  .congestion_threshold = 12,
                                  .max_write = MAX_WRITE,
                                  .time_gran = 1,
                                  .max_pages = 256};
      reply(u, 0, &out, sizeof out);
      break;
    }
    case FUSE_LOOKUP: {
      if (in->nodeid != FUSE_ROOT_ID || strcmp((char *)arg, "s") != 0) {
        reply(u, -ENOENT, NULL, 0);
        break;
      }
      struct fuse_entry_out e = {.nodeid = STREAM_NODE, .entry_valid = 1, .attr_valid = 1};
      attr_of(STREAM_NODE, &e.attr);
      reply(u, 0, &e, sizeof e);
      break;
    }
    case FUSE_GETATTR:
    case FUSE_SETATTR: {
      struct fuse_attr_out a = {.attr_valid = 1};
      attr_of(in->nodeid, &a.attr);
      reply(u, 0, &a, sizeof a);
      break;
    }
    case FUSE_OPEN: {
      struct fuse_open_in *i = arg;
      uint64_t fh = MAX_OPEN;
      for (uint64_t k = 0; k < MAX_OPEN; k++) {
        uint64_t c = (next_fh + k) % MAX_OPEN;
        if (!files[c].used) {
          fh = c;
          break;
        }
      }
      if (in->nodeid != STREAM_NODE || fh == MAX_OPEN) {
        reply(u, in->nodeid != STREAM_NODE ? -EISDIR : -EMFILE, NULL, 0);
        break;
      }
      next_fh = fh + 1;
      files[fh] = (struct file){.used = 1, .trunc = (i->flags & O_TRUNC) != 0, .next = head};
      struct fuse_open_out out = {.fh = fh, .open_flags = FOPEN_DIRECT_IO};
      reply(u, 0, &out, sizeof out);
      break;
    }
    case FUSE_READ: {
      struct fuse_read_in *i = arg;
      struct parked p = {.unique = u, .fh = i->fh % MAX_OPEN, .size = i->size};
      if (!answer(&p)) {
        if (nparked == MAX_PARKED) reply(u, -EAGAIN, NULL, 0);
        else parked[nparked++] = p;
      }
      break;
    }
    case FUSE_WRITE: {
      struct fuse_write_in *i = arg;
      files[i->fh % MAX_OPEN].wrote = 1;
      struct fuse_write_out out = {.size = i->size};
      publish((unsigned char *)arg + sizeof *i, i->size); /* readers first, as the mount */
      reply(u, 0, &out, sizeof out);
      break;
    }
    case FUSE_RELEASE: {
      struct fuse_release_in *i = arg;
      struct file *f = &files[i->fh % MAX_OPEN];
      reply(u, 0, NULL, 0);
      if (f->trunc && !f->wrote) publish(NULL, 0); /* ": > s": end of file */
      int k = 0;
      for (int j = 0; j < nparked; j++) {
        if (parked[j].fh == i->fh) reply(parked[j].unique, 0, NULL, 0);
        else parked[k++] = parked[j];
      }
      nparked = k;
      f->used = 0;
      break;
    }
    case FUSE_INTERRUPT: {
      struct fuse_interrupt_in *i = arg;
      int k = 0;
      for (int j = 0; j < nparked; j++) {
        if (parked[j].unique == i->unique) reply(i->unique, -EINTR, NULL, 0);
        else parked[k++] = parked[j];
      }
      nparked = k;
      break;
    }
    case FUSE_FORGET:
    case FUSE_BATCH_FORGET:
      break; /* no reply */
    case FUSE_FLUSH:
    case FUSE_FSYNC:
      reply(u, 0, NULL, 0);
      break;
    case FUSE_STATFS: {
      struct fuse_statfs_out s = {.st = {.bsize = 4096, .namelen = 255, .frsize = 4096}};
      reply(u, 0, &s, sizeof s);
      break;
    }
    case FUSE_DESTROY:
      reply(u, 0, NULL, 0);
      goto out;
    default:
      reply(u, -ENOSYS, NULL, 0);
    }
  }
out:
  if (!stopping) umount2(o.path, MNT_DETACH);
  close(dev);
  return 0;
}

int main(int argc, char **argv) {
  struct opts o = parse(argc, argv);
  if (!strcmp(o.role, "serve")) return serve(o);
  fprintf(stderr, "floor: --role serve\n");
  return 2;
}
