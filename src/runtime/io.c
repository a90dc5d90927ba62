/*
 * io.c - the node's I/O poller: one poll thread on an edge-triggered epoll
 * set, and the slot table of registered descriptors (see io.h).
 */
#define _GNU_SOURCE
#include "runtime/io.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "keel/error.h"
#include "runtime/rt_internal.h"

#define IO_CHUNK_BITS 10
#define IO_CHUNK (1u << IO_CHUNK_BITS)
#define IO_NCHUNKS (KEEL__IO_MAX_SLOTS / IO_CHUNK)
#define IO_NIL UINT32_MAX
#define IO_GEN_MASK UINT32_C(0x7fffffff)
#define IO_EVENTS 256

typedef struct io_slot {
  pthread_mutex_t lock;
  _Atomic uint32_t gen; /* generation of the current (or next) user */
  uint32_t next_free;
  bool open;
  int fd;
  void *obj;
  keel__io_event_fn ev;
  keel__io_free_fn fr;
} io_slot;

typedef struct rt_io {
  int epfd;
  int stopfd; /* eventfd: wakes the poll thread to stop */
  pthread_t thread;
  _Atomic bool running; /* the thread is started on the first open */
  bool stopped;
  _Atomic(io_slot *) chunks[IO_NCHUNKS];
  pthread_mutex_t free_lock;
  uint32_t free_head;
  uint32_t high; /* slots ever handed out */
} rt_io;

static int io_thread_start(rt_io *io);

static inline uint32_t h_idx(uint64_t h) {
  return (uint32_t)h;
}
static inline uint32_t h_gen(uint64_t h) {
  return (uint32_t)(h >> 32);
}

static rt_io *io_get(void) {
  rt_node *n = keel__rt;
  return n != NULL ? n->io : NULL;
}

static io_slot *slot_at(rt_io *io, uint32_t idx) {
  if (idx >= KEEL__IO_MAX_SLOTS)
    return NULL;
  io_slot *c = atomic_load_explicit(&io->chunks[idx >> IO_CHUNK_BITS],
                                    memory_order_acquire);
  return c != NULL ? &c[idx & (IO_CHUNK - 1)] : NULL;
}

/* Under free_lock: a free slot index, or IO_NIL. */
static uint32_t slot_take(rt_io *io) {
  if (io->free_head != IO_NIL) {
    uint32_t idx = io->free_head;
    io->free_head = slot_at(io, idx)->next_free;
    return idx;
  }
  if (io->high >= KEEL__IO_MAX_SLOTS)
    return IO_NIL;
  uint32_t ci = io->high >> IO_CHUNK_BITS;
  if (atomic_load_explicit(&io->chunks[ci], memory_order_relaxed) == NULL) {
    io_slot *c = calloc(IO_CHUNK, sizeof *c);
    if (c == NULL)
      return IO_NIL;
    for (unsigned i = 0; i < IO_CHUNK; i++) {
      pthread_mutex_init(&c[i].lock, NULL);
      atomic_init(&c[i].gen, 1);
      c[i].fd = -1;
    }
    atomic_store_explicit(&io->chunks[ci], c, memory_order_release);
  }
  return io->high++;
}

int keel__io_open(int fd, keel__io_event_fn ev, keel__io_free_fn fr, void *obj,
                  uint64_t *handle) {
  rt_node *n = keel__rt;
  if (n == NULL)
    return KEEL_ESTATE;
  if (n->sim != NULL || n->io == NULL)
    return KEEL_EUNSUPPORTED;
  rt_io *io = n->io;
  int rc = io_thread_start(io);
  if (rc != KEEL_OK)
    return rc;
  pthread_mutex_lock(&io->free_lock);
  uint32_t idx = slot_take(io);
  pthread_mutex_unlock(&io->free_lock);
  if (idx == IO_NIL)
    return io->high >= KEEL__IO_MAX_SLOTS ? KEEL_ESYSLIMIT : KEEL_ENOMEM;
  io_slot *s = slot_at(io, idx);
  pthread_mutex_lock(&s->lock);
  uint64_t h =
      (uint64_t)atomic_load_explicit(&s->gen, memory_order_relaxed) << 32 | idx;
  *handle = h; /* before any event can reach obj */
  s->fd = fd;
  s->obj = obj;
  s->ev = ev;
  s->fr = fr;
  s->open = true;
  /* Registered under the lock: an event for the new descriptor waits for
   * the slot to be ready. */
  struct epoll_event e = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                          .data.u64 = h};
  if (epoll_ctl(io->epfd, EPOLL_CTL_ADD, fd, &e) != 0) {
    s->open = false;
    s->fd = -1;
    s->obj = NULL;
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_lock(&io->free_lock);
    s->next_free = io->free_head;
    io->free_head = idx;
    pthread_mutex_unlock(&io->free_lock);
    return KEEL_EIO;
  }
  pthread_mutex_unlock(&s->lock);
  return KEEL_OK;
}

void *keel__io_lock(uint64_t handle) {
  rt_io *io = io_get();
  if (io == NULL || handle == 0)
    return NULL;
  io_slot *s = slot_at(io, h_idx(handle));
  if (s == NULL)
    return NULL;
  pthread_mutex_lock(&s->lock);
  if (!s->open ||
      atomic_load_explicit(&s->gen, memory_order_relaxed) != h_gen(handle)) {
    pthread_mutex_unlock(&s->lock);
    return NULL;
  }
  return s->obj;
}

void keel__io_unlock(uint64_t handle) {
  io_slot *s = slot_at(io_get(), h_idx(handle));
  pthread_mutex_unlock(&s->lock);
}

int keel__io_fd(uint64_t handle) {
  return slot_at(io_get(), h_idx(handle))->fd;
}

void keel__io_close_locked(uint64_t handle) {
  rt_io *io = io_get();
  uint32_t idx = h_idx(handle);
  io_slot *s = slot_at(io, idx);
  if (s->fd >= 0) {
    epoll_ctl(io->epfd, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
  }
  s->fd = -1;
  s->open = false;
  s->obj = NULL;
  uint32_t g =
      (atomic_load_explicit(&s->gen, memory_order_relaxed) + 1) & IO_GEN_MASK;
  atomic_store_explicit(&s->gen, g != 0 ? g : 1, memory_order_relaxed);
  pthread_mutex_lock(&io->free_lock);
  s->next_free = io->free_head;
  io->free_head = idx;
  pthread_mutex_unlock(&io->free_lock);
}

bool keel__io_available(void) {
  return io_get() != NULL;
}

int keel__io_send(keel_term pid, keel_term msg) {
  keel_proc *self = keel__rt_tl_proc;
  if (self == NULL || self->fiber == NULL)
    return keel_send(pid, msg);
  int32_t budget = self->budget;
  self->budget = INT32_MAX / 2; /* keel_send does not yield above 0 */
  int rc = keel_send(pid, msg);
  self->budget = budget - KEEL_COST_SEND;
  return rc;
}

/* ---- the poll thread ----------------------------------------------------- */

static void dispatch(rt_io *io, uint64_t h, uint32_t events) {
  io_slot *s = slot_at(io, h_idx(h));
  if (s == NULL)
    return;
  pthread_mutex_lock(&s->lock);
  void *obj = NULL;
  keel__io_free_fn fr = NULL;
  if (s->open &&
      atomic_load_explicit(&s->gen, memory_order_relaxed) == h_gen(h)) {
    obj = s->obj;
    fr = s->fr;
    s->ev(obj, h, events);
    if (s->open)
      obj = NULL; /* still open: not ours to free */
  }
  pthread_mutex_unlock(&s->lock);
  if (obj != NULL && fr != NULL)
    fr(obj); /* closed by its event function */
}

static void *poll_main(void *arg) {
  rt_io *io = arg;
  struct epoll_event ev[IO_EVENTS];
  for (;;) {
    int k = epoll_wait(io->epfd, ev, IO_EVENTS, -1);
    if (k < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    for (int i = 0; i < k; i++) {
      if (ev[i].data.u64 == 0)
        return NULL; /* the stop eventfd */
      dispatch(io, ev[i].data.u64, ev[i].events);
    }
  }
  return NULL;
}

int keel__rt_io_start(rt_node *n) {
  rt_io *io = calloc(1, sizeof *io);
  if (io == NULL)
    return KEEL_ENOMEM;
  pthread_mutex_init(&io->free_lock, NULL);
  io->free_head = IO_NIL;
  io->epfd = epoll_create1(EPOLL_CLOEXEC);
  io->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  struct epoll_event e = {.events = EPOLLIN, .data.u64 = 0};
  if (io->epfd < 0 || io->stopfd < 0 ||
      epoll_ctl(io->epfd, EPOLL_CTL_ADD, io->stopfd, &e) != 0) {
    if (io->epfd >= 0)
      close(io->epfd);
    if (io->stopfd >= 0)
      close(io->stopfd);
    pthread_mutex_destroy(&io->free_lock);
    free(io);
    return KEEL_EIO;
  }
  n->io = io;
  return KEEL_OK;
}

/* Starts the poll thread unless it runs (a node that never opens a
 * descriptor has none, as the dirty pools start on demand). */
static int io_thread_start(rt_io *io) {
  if (atomic_load_explicit(&io->running, memory_order_acquire))
    return KEEL_OK;
  int rc = KEEL_OK;
  pthread_mutex_lock(&io->free_lock);
  if (io->stopped)
    rc = KEEL_ESTATE;
  else if (!atomic_load_explicit(&io->running, memory_order_relaxed)) {
    if (pthread_create(&io->thread, NULL, poll_main, io) != 0)
      rc = KEEL_EIO;
    else
      atomic_store_explicit(&io->running, true, memory_order_release);
  }
  pthread_mutex_unlock(&io->free_lock);
  return rc;
}

void keel__rt_io_stop(rt_node *n) {
  rt_io *io = n->io;
  if (io == NULL)
    return;
  pthread_mutex_lock(&io->free_lock);
  io->stopped = true;
  pthread_mutex_unlock(&io->free_lock);
  if (!atomic_load(&io->running))
    return;
  uint64_t one = 1;
  while (write(io->stopfd, &one, sizeof one) < 0 && errno == EINTR)
    ;
  pthread_join(io->thread, NULL);
  atomic_store(&io->running, false);
}

void keel__rt_io_destroy(rt_node *n) {
  rt_io *io = n->io;
  if (io == NULL)
    return;
  keel__rt_io_stop(n);
  for (uint32_t i = 0; i < io->high; i++) {
    io_slot *s = slot_at(io, i);
    if (s->open) {
      if (s->fr != NULL)
        s->fr(s->obj);
      close(s->fd);
    }
  }
  for (unsigned c = 0; c < IO_NCHUNKS; c++) {
    io_slot *ch = atomic_load_explicit(&io->chunks[c], memory_order_relaxed);
    if (ch == NULL)
      continue;
    for (unsigned i = 0; i < IO_CHUNK; i++)
      pthread_mutex_destroy(&ch[i].lock);
    free(ch);
  }
  close(io->epfd);
  close(io->stopfd);
  pthread_mutex_destroy(&io->free_lock);
  free(io);
  n->io = NULL;
}
