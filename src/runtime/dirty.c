/*
 * dirty.c - the dirty CPU and I/O pools (keel/dirty.h).
 *
 * Each pool is a FIFO of jobs under one mutex and up to a fixed number of
 * threads waiting on a condition variable; a thread is started when a job
 * is queued while the queued jobs outnumber the waiting threads, so a node
 * that makes no dirty call starts none. A job is run by a scheduler only
 * if a fiber's job finds no pool thread and none can be started.
 *
 * Fiber processes: the job lives on the fiber's stack. The fiber suspends
 * itself (keel__rt_fiber_suspend); its scheduler submits the job once the
 * fiber's registers are saved, then runs other processes. The process
 * stays SCHEDULED and is queued nowhere, so senders only set NEWMAIL and
 * their messages wait in the mailbox. The pool thread stores fn's result
 * and makes the process runnable (inject queue: exactly once, since
 * nobody else queues a SCHEDULED process); a scheduler resumes the fiber,
 * which returns the result. The job is not touched after that wake-up.
 * We chose this over moving the fiber's context to the pool thread (as
 * BEAM moves the process): the dirty function then runs on a plain thread
 * stack of normal size, and no context switch code runs off the
 * schedulers.
 *
 * Handler processes: the job is allocated with a copy of the tag and sent
 * back as {dirty_done, Tag, Result} when fn returns (a silent no-op when
 * the process is gone).
 *
 * Node stop (after the schedulers are joined) closes both pools and waits
 * until every queued job has run: jobs are never abandoned, so fn runs
 * exactly once for every call that returned KEEL_OK and frees what it
 * owns. A fiber whose job ends after the schedulers stopped is terminated
 * without being resumed.
 */
#include <pthread.h>
#include <stdlib.h>

#include "keel/dirty.h"
#include "runtime/rt_internal.h"

enum { RT_DIRTY_CPU = 0, RT_DIRTY_IO = 1, RT_DIRTY_POOLS = 2 };

typedef struct rt_dirty_job {
  struct rt_dirty_job *next;
  keel_dirty_fn fn;
  void *arg;
  keel_proc *proc;     /* the process it works for */
  uint64_t pid_number; /* and its pid then */
  struct rt_dirty_pool *pool;
  int result; /* fiber jobs: fn's result */
  bool async; /* async jobs: allocated, answered by a message */
  keel_term tag;
  keel_heap heap; /* async: holds the tag's copy and the answer */
} rt_dirty_job;

typedef struct rt_dirty_pool {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  rt_dirty_job *head, *tail;
  bool stop;
  unsigned nthreads; /* started so far (on demand, up to max) */
  unsigned max;
  unsigned idle;   /* threads waiting for a job */
  unsigned queued; /* jobs in the queue */
  pthread_t *threads;
  rt_node *node;
  struct rt_dirty *dirty;
} rt_dirty_pool;

typedef struct rt_dirty {
  rt_dirty_pool pools[RT_DIRTY_POOLS];
  _Atomic uint64_t done; /* jobs finished */
  keel_term done_atom;   /* 'dirty_done' */
} rt_dirty;

/* The job the calling pool thread is running (NULL elsewhere). */
static _Thread_local rt_dirty_job *tl_job;

/* ---- running jobs ------------------------------------------------------ */

static void answer(rt_dirty_job *j, int r) {
  keel_term msg = keel_tuple(&j->heap, 3, j->pool->dirty->done_atom, j->tag,
                             keel_int(&j->heap, r));
  /* Dropped when the process is gone; without memory, nothing can be
   * delivered either (the caller's documented risk, as for keel_send). */
  if (msg != KEEL_NONE)
    (void)keel_send(keel_pid_local(j->pid_number), msg);
  keel_heap_destroy(&j->heap);
  free(j);
}

static void run_job(rt_node *n, rt_dirty_job *j) {
  tl_job = j;
  int r = j->fn(j->arg);
  tl_job = NULL;
  atomic_fetch_add_explicit(&j->pool->dirty->done, 1, memory_order_relaxed);
  if (j->async) {
    answer(j, r);
    return;
  }
  keel_proc *p = j->proc;
  j->result = r;
  /* The last access to j (on the fiber's stack): from here on the fiber
   * may resume and return. */
  keel__rt_make_runnable(n, p);
}

static void *worker_main(void *arg) {
  rt_dirty_pool *P = arg;
  for (;;) {
    pthread_mutex_lock(&P->lock);
    while (P->head == NULL && !P->stop) {
      P->idle++;
      pthread_cond_wait(&P->cond, &P->lock);
      P->idle--;
    }
    rt_dirty_job *j = P->head;
    if (j != NULL) {
      P->head = j->next;
      if (P->head == NULL)
        P->tail = NULL;
      P->queued--;
    }
    pthread_mutex_unlock(&P->lock);
    if (j == NULL)
      break; /* stopping and nothing left */
    run_job(P->node, j);
  }
  return NULL;
}

/* Queues j, starting one more pool thread when the queued jobs outnumber
 * the waiting threads and the pool is not full. KEEL_ESTATE once the pool
 * is closed, KEEL_EIO when it has no thread and none could be started. */
static int submit(rt_dirty_pool *P, rt_dirty_job *j) {
  j->next = NULL;
  pthread_mutex_lock(&P->lock);
  if (P->stop) {
    pthread_mutex_unlock(&P->lock);
    return KEEL_ESTATE;
  }
  if (P->queued + 1 > P->idle && P->nthreads < P->max &&
      pthread_create(&P->threads[P->nthreads], NULL, worker_main, P) == 0)
    P->nthreads++;
  if (P->nthreads == 0) {
    pthread_mutex_unlock(&P->lock);
    return KEEL_EIO;
  }
  P->queued++;
  if (P->tail != NULL)
    P->tail->next = j;
  else
    P->head = j;
  P->tail = j;
  pthread_cond_signal(&P->cond);
  pthread_mutex_unlock(&P->lock);
  return KEEL_OK;
}

/* Runs on the scheduler's stack once the fiber is suspended. The pools
 * close only after the schedulers are joined, so submit fails only when
 * no pool thread exists and none can be started: then the job runs right
 * here, on the scheduler, so that the fiber still resumes. */
static void submit_suspended(void *arg) {
  rt_dirty_job *j = arg;
  if (submit(j->pool, j) != KEEL_OK)
    run_job(j->pool->node, j);
}

/* ---- API --------------------------------------------------------------- */

static bool node_open(const rt_node *n) {
  return n != NULL && n->dirty != NULL &&
         !atomic_load_explicit(&n->stopping, memory_order_acquire);
}

static int dirty_call(keel_proc *self, keel_dirty_fn fn, void *arg,
                      unsigned kind) {
  rt_node *n = keel__rt;
  if (fn == NULL)
    return KEEL_EINVAL;
  if (!node_open(n) || self == NULL || self->fiber == NULL)
    return KEEL_ESTATE;
  rt_dirty_job j = {.fn = fn,
                    .arg = arg,
                    .proc = self,
                    .pid_number = self->pid_number,
                    .pool = &n->dirty->pools[kind]};
  int rc = keel__rt_fiber_suspend(self, submit_suspended, &j);
  return rc != KEEL_OK ? rc : j.result;
}

int keel_dirty_cpu(keel_proc *self, keel_dirty_fn fn, void *arg) {
  return dirty_call(self, fn, arg, RT_DIRTY_CPU);
}

int keel_dirty_io(keel_proc *self, keel_dirty_fn fn, void *arg) {
  return dirty_call(self, fn, arg, RT_DIRTY_IO);
}

static int dirty_async(keel_proc *self, keel_dirty_fn fn, void *arg,
                       keel_term tag, unsigned kind) {
  rt_node *n = keel__rt;
  if (fn == NULL || tag == KEEL_NONE)
    return KEEL_EINVAL;
  if (!node_open(n) || self == NULL || keel__rt_tl_proc != self)
    return KEEL_ESTATE;
  rt_dirty_job *j = calloc(1, sizeof *j);
  if (j == NULL)
    return KEEL_ENOMEM;
  keel_heap_init(&j->heap);
  j->tag = keel_term_copy(&j->heap, tag);
  j->fn = fn;
  j->arg = arg;
  j->proc = self;
  j->pid_number = self->pid_number;
  j->pool = &n->dirty->pools[kind];
  j->async = true;
  int rc = j->tag == KEEL_NONE ? KEEL_ENOMEM : submit(j->pool, j);
  if (rc != KEEL_OK) {
    keel_heap_destroy(&j->heap);
    free(j);
  }
  return rc;
}

int keel_dirty_cpu_async(keel_proc *self, keel_dirty_fn fn, void *arg,
                         keel_term tag) {
  return dirty_async(self, fn, arg, tag, RT_DIRTY_CPU);
}

int keel_dirty_io_async(keel_proc *self, keel_dirty_fn fn, void *arg,
                        keel_term tag) {
  return dirty_async(self, fn, arg, tag, RT_DIRTY_IO);
}

bool keel_dirty_process_alive(void) {
  rt_node *n = keel__rt;
  if (n == NULL)
    return false;
  rt_dirty_job *j = tl_job;
  if (j != NULL) {
    if (atomic_load_explicit(&n->stopping, memory_order_acquire))
      return false;
    uint64_t ctl = atomic_load_explicit(&j->proc->ctl, memory_order_acquire);
    return rt_gen(ctl) == (j->pid_number >> RT_IDX_BITS) &&
           (ctl & RT_ST_MASK) != RT_ST_FREE && (ctl & RT_EXITING) == 0;
  }
  keel_proc *p = keel__rt_tl_proc;
  return p != NULL && (atomic_load_explicit(&p->ctl, memory_order_acquire) &
                       RT_EXITING) == 0;
}

/* ---- node start and stop ----------------------------------------------- */

bool keel__rt_dirty_on_thread(void) {
  return tl_job != NULL;
}

uint64_t keel__rt_dirty_jobs(const rt_node *n) {
  return n->dirty == NULL
             ? 0
             : atomic_load_explicit(&n->dirty->done, memory_order_relaxed);
}

/* Closes the pool, lets its threads run the queue dry and joins them. */
static void pool_stop(rt_dirty_pool *P) {
  pthread_mutex_lock(&P->lock);
  P->stop = true;
  pthread_cond_broadcast(&P->cond);
  pthread_mutex_unlock(&P->lock);
  for (unsigned i = 0; i < P->nthreads; i++)
    pthread_join(P->threads[i], NULL);
  free(P->threads);
  pthread_cond_destroy(&P->cond);
  pthread_mutex_destroy(&P->lock);
}

static int pool_start(rt_node *n, rt_dirty *D, rt_dirty_pool *P,
                      unsigned count) {
  pthread_mutex_init(&P->lock, NULL);
  pthread_cond_init(&P->cond, NULL);
  P->node = n;
  P->dirty = D;
  P->max = count;
  P->threads = calloc(count, sizeof *P->threads);
  if (P->threads == NULL) {
    pool_stop(P);
    return KEEL_ENOMEM;
  }
  return KEEL_OK;
}

int keel__rt_dirty_start(rt_node *n, const keel_node_opts *o) {
  if (o->dirty_cpu > KEEL_DIRTY_MAX_THREADS ||
      o->dirty_io > KEEL_DIRTY_MAX_THREADS)
    return KEEL_EINVAL;
  rt_dirty *D = calloc(1, sizeof *D);
  if (D == NULL)
    return KEEL_ENOMEM;
  D->done_atom = keel_atom("dirty_done");
  if (D->done_atom == KEEL_NONE) {
    free(D);
    return KEEL_ESYSLIMIT;
  }
  unsigned counts[RT_DIRTY_POOLS] = {
      o->dirty_cpu != 0 ? o->dirty_cpu : n->nsched,
      o->dirty_io != 0 ? o->dirty_io : KEEL_DIRTY_IO_DEFAULT};
  for (unsigned k = 0; k < RT_DIRTY_POOLS; k++) {
    int rc = pool_start(n, D, &D->pools[k], counts[k]);
    if (rc != KEEL_OK) {
      while (k-- > 0)
        pool_stop(&D->pools[k]);
      free(D);
      return rc;
    }
  }
  n->dirty = D;
  return KEEL_OK;
}

void keel__rt_dirty_stop(rt_node *n) {
  rt_dirty *D = n->dirty;
  if (D == NULL)
    return;
  for (unsigned k = 0; k < RT_DIRTY_POOLS; k++)
    pool_stop(&D->pools[k]);
  n->dirty = NULL;
  free(D);
}
