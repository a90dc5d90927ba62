/*
 * remote.c - links and monitors to pids of other nodes, and the state of
 * the connections that the distribution layer declares (keel/signals.h,
 * "Pids of other nodes").
 *
 * A process keeps its relations to remote pids in a list hanging off its
 * own table (rt_ext.remote), owner-only like the rest of it. Each records
 * the connection it was made on. The connections (node atom, up or down,
 * number) and the list of processes that ever made such a relation live
 * here under one mutex: a process checks the node and lists itself under
 * it, and keel_dist_nodedown marks the node down and takes the list under
 * it too, so a relation is either refused at once (node down) or made
 * before the node-down signal is sent to its process. That signal carries
 * the connection number, so a late one never fires a relation made on a
 * later connection.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/fault.h"
#include "keel/signals.h"
#include "runtime/rt_internal.h"
#include "runtime/signal.h"

typedef struct rt_remote {
  struct rt_remote *next;
  keel_pid_parts pid;
  uint64_t ref;  /* monitors: the ref number */
  uint32_t conn; /* the connection it was made on */
  bool link;     /* a link, else a monitor */
} rt_remote;

typedef struct dist_node {
  keel_term node;
  uint32_t conn; /* number of the current (or last) connection */
  bool up;
} dist_node;

static struct {
  pthread_mutex_t mu;
  dist_node *nodes;
  size_t nnodes, capnodes;
  uint64_t *procs; /* pid numbers that made remote relations (some dead) */
  size_t nprocs, capprocs;
  uint32_t conn_seq;
} D = {.mu = PTHREAD_MUTEX_INITIALIZER};

static _Atomic(keel_dist_signal_fn) hook_fn;
static void *_Atomic hook_arg;

void keel_set_dist_signal_hook(keel_dist_signal_fn fn, void *arg) {
  atomic_store(&hook_arg, arg);
  atomic_store(&hook_fn, fn);
}

static keel_term noconnection(void) {
  static _Atomic keel_term a;
  keel_term t = atomic_load_explicit(&a, memory_order_relaxed);
  if (t == 0) {
    t = keel_atom("noconnection");
    atomic_store_explicit(&a, t, memory_order_relaxed);
  }
  return t;
}

#define SCRATCH_WORDS 48

/* Tells the distribution layer, if one is installed. */
static void tell(keel_dist_signal kind, uint64_t from, const keel_pid_parts *to,
                 uint64_t ref, keel_term reason) {
  keel_dist_signal_fn fn = atomic_load(&hook_fn);
  if (fn == NULL)
    return;
  uint64_t buf[SCRATCH_WORDS];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, SCRATCH_WORDS);
  keel_term pid = keel_pid_make(&h, to);
  keel_term r = kind == KEEL_DIST_MONITOR || kind == KEEL_DIST_DEMONITOR
                    ? keel__rt_ref_term(&h, ref, RT_NO_PID)
                    : KEEL_NONE;
  keel_term f = from != RT_NO_PID ? keel_pid_local(from) : KEEL_ATOM(UNDEFINED);
  fn(kind, f, pid, r, reason, atomic_load(&hook_arg));
}

/* ---- connections ------------------------------------------------------ */

static bool is_remote_node(keel_term node) {
  return keel_is_atom(node) && node != keel_term_local_node(NULL);
}

/* The entry of node (under the lock), or NULL. */
static dist_node *node_find(keel_term node) {
  for (size_t i = 0; i < D.nnodes; i++)
    if (D.nodes[i].node == node)
      return &D.nodes[i];
  return NULL;
}

int keel_dist_nodeup(keel_term node) {
  if (keel__rt == NULL)
    return KEEL_ESTATE;
  if (!is_remote_node(node))
    return KEEL_EBADARG;
  int rc = KEEL_OK;
  pthread_mutex_lock(&D.mu);
  dist_node *e = node_find(node);
  if (e == NULL && D.nnodes == D.capnodes) {
    size_t cap = D.capnodes != 0 ? D.capnodes * 2 : 8;
    dist_node *t =
        keel__fault() ? NULL : realloc(D.nodes, cap * sizeof *D.nodes);
    if (t == NULL)
      rc = KEEL_ENOMEM;
    else
      D.nodes = t, D.capnodes = cap;
  }
  if (rc == KEEL_OK && e == NULL) {
    e = &D.nodes[D.nnodes++];
    *e = (dist_node){.node = node};
  }
  if (rc == KEEL_OK && !e->up) {
    e->up = true;
    if (++D.conn_seq == 0) /* 0 means "no connection" */
      ++D.conn_seq;
    e->conn = D.conn_seq;
  }
  pthread_mutex_unlock(&D.mu);
  return rc;
}

bool keel_dist_is_up(keel_term node) {
  pthread_mutex_lock(&D.mu);
  dist_node *e = node_find(node);
  bool up = e != NULL && e->up;
  pthread_mutex_unlock(&D.mu);
  return up;
}

/* Lists self for node-down signals (under the lock); drops dead entries
 * before growing the list. */
static bool procs_add(rt_ext *x, uint64_t self) {
  if (x->dist_known)
    return true;
  if (D.nprocs == D.capprocs) {
    size_t k = 0;
    for (size_t i = 0; i < D.nprocs; i++)
      if (keel__rt_lookup(keel__rt, D.procs[i]) != NULL)
        D.procs[k++] = D.procs[i];
    D.nprocs = k;
  }
  if (D.nprocs == D.capprocs) {
    size_t cap = D.capprocs != 0 ? D.capprocs * 2 : 64;
    uint64_t *t =
        keel__fault() ? NULL : realloc(D.procs, cap * sizeof *D.procs);
    if (t == NULL)
      return false;
    D.procs = t, D.capprocs = cap;
  }
  D.procs[D.nprocs++] = self;
  x->dist_known = true;
  return true;
}

/* The number of the connection to node if it is up (0 when it is not),
 * self listed for its end. KEEL_ENOMEM when self cannot be listed. */
static int attach(keel_proc *self, rt_ext *x, keel_term node, uint32_t *conn) {
  int rc = KEEL_OK;
  pthread_mutex_lock(&D.mu);
  dist_node *e = node_find(node);
  *conn = e != NULL && e->up ? e->conn : 0;
  if (*conn != 0 && !procs_add(x, self->pid_number))
    rc = KEEL_ENOMEM;
  pthread_mutex_unlock(&D.mu);
  return rc;
}

int keel_dist_nodedown(keel_term node) {
  rt_node *n = keel__rt;
  if (n == NULL)
    return KEEL_ESTATE;
  if (!is_remote_node(node))
    return KEEL_EBADARG;
  pthread_mutex_lock(&D.mu);
  dist_node *e = node_find(node);
  if (e == NULL || !e->up) {
    pthread_mutex_unlock(&D.mu);
    return 0;
  }
  /* Every signal is made before the node is marked down: without memory
   * nothing changes. */
  uint64_t key = ((uint64_t)e->conn << 32) | keel_atom_index(node);
  size_t k = D.nprocs;
  void **sigs = keel__fault() ? NULL : malloc((k + 1) * sizeof(void *));
  size_t made = 0;
  while (sigs != NULL && made < k &&
         (sigs[made] = keel__rt_sig_new(n, RT_SIG_NODEDOWN, 0, RT_NO_PID, key,
                                        KEEL_NONE)) != NULL)
    made++;
  uint64_t *to = made == k ? malloc((k + 1) * sizeof *to) : NULL;
  if (to == NULL) {
    pthread_mutex_unlock(&D.mu);
    for (size_t i = 0; i < made; i++)
      keel__rt_sig_free((rt_sig *)sigs[i]);
    free(sigs);
    return KEEL_ENOMEM;
  }
  if (k != 0) /* D.procs may be NULL when nobody relates to the node */
    memcpy(to, D.procs, k * sizeof *to);
  e->up = false;
  pthread_mutex_unlock(&D.mu);
  int told = 0;
  for (size_t i = 0; i < k; i++)
    told += keel__rt_sig_send(n, to[i], (rt_sig *)sigs[i]);
  free(to);
  free(sigs);
  return told;
}

void keel__rt_remote_reset(void) {
  pthread_mutex_lock(&D.mu);
  free(D.nodes);
  free(D.procs);
  D.nodes = NULL;
  D.procs = NULL;
  D.nnodes = D.capnodes = D.nprocs = D.capprocs = 0;
  pthread_mutex_unlock(&D.mu);
}

/* ---- relations of a process ------------------------------------------- */

static bool same_pid(const keel_pid_parts *a, const keel_pid_parts *b) {
  return a->node == b->node && a->id == b->id && a->serial == b->serial &&
         a->creation == b->creation;
}

/* The parts of a remote pid, or false (not one, or one naming us). */
static bool remote_parts(keel_term pid, keel_pid_parts *parts) {
  return keel_pid_get(pid, parts) == KEEL_OK && is_remote_node(parts->node);
}

/* Queues the message t to self (a signal's result: no sender's count). */
static int queue_self(keel_proc *self, keel_term t) {
  rt_msg *m =
      t != KEEL_NONE ? keel__rt_msg_new(keel__rt, keel__rt_tl_sched, t) : NULL;
  if (m == NULL)
    return KEEL_ENOMEM;
  keel__rt_inner_append(self, m);
  keel__rt_mq_out(self, -1);
  return KEEL_OK;
}

static int queue_down(keel_proc *self, const keel_pid_parts *pid,
                      uint64_t ref) {
  uint64_t buf[SCRATCH_WORDS];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, SCRATCH_WORDS);
  keel_term r = keel__rt_ref_term(&h, ref, RT_NO_PID);
  keel_term p = keel_pid_make(&h, pid);
  keel_term t = r == KEEL_NONE || p == KEEL_NONE
                    ? KEEL_NONE
                    : keel_tuple(&h, 5, KEEL_ATOM(DOWN), r, KEEL_ATOM(PROCESS),
                                 p, noconnection());
  return queue_self(self, t);
}

static rt_remote *record(rt_ext *x, const keel_pid_parts *pid, bool link,
                         uint64_t ref, uint32_t conn) {
  rt_remote *r = keel__fault() ? NULL : malloc(sizeof *r);
  if (r == NULL)
    return NULL;
  *r = (rt_remote){
      .next = x->remote, .pid = *pid, .ref = ref, .conn = conn, .link = link};
  x->remote = r;
  return r;
}

/* The link record of pid in x (and the link pointing at it), or NULL. */
static rt_remote **find_link(rt_ext *x, const keel_pid_parts *pid) {
  if (x == NULL)
    return NULL;
  for (rt_remote **pp = &x->remote; *pp != NULL; pp = &(*pp)->next)
    if ((*pp)->link && same_pid(&(*pp)->pid, pid))
      return pp;
  return NULL;
}

int keel__rt_remote_link(keel_proc *self, keel_term pid) {
  keel_pid_parts parts;
  if (!remote_parts(pid, &parts))
    return KEEL_EBADARG;
  rt_ext *x = keel__rt_ext(self);
  if (x == NULL)
    return KEEL_ENOMEM;
  if (find_link(x, &parts) != NULL)
    return KEEL_OK; /* idempotent (G12) */
  uint32_t conn;
  int rc = attach(self, x, parts.node, &conn);
  if (rc != KEEL_OK)
    return rc;
  if (conn == 0) { /* G18: an exit signal from pid, reason noconnection */
    uint64_t buf[SCRATCH_WORDS];
    keel_heap h;
    keel_heap_init_fixed(&h, buf, SCRATCH_WORDS);
    keel_term t = keel_tuple(&h, 3, KEEL_ATOM(EXIT), pid, noconnection());
    rt_sig *sig = t != KEEL_NONE ? keel__rt_sig_new(keel__rt, RT_SIG_EXIT, 0,
                                                    RT_NO_PID, 0, t)
                                 : NULL;
    if (sig == NULL)
      return KEEL_ENOMEM;
    (void)keel__rt_sig_send(keel__rt, self->pid_number, sig);
    return KEEL_OK;
  }
  if (record(x, &parts, true, 0, conn) == NULL)
    return KEEL_ENOMEM;
  tell(KEEL_DIST_LINK, self->pid_number, &parts, 0, KEEL_NONE);
  return KEEL_OK;
}

int keel__rt_remote_exit(keel_proc *self, keel_term pid, keel_term reason) {
  keel_pid_parts parts;
  if (!remote_parts(pid, &parts))
    return KEEL_EBADARG;
  if (keel_dist_is_up(parts.node))
    tell(KEEL_DIST_EXIT2, self != NULL ? self->pid_number : RT_NO_PID, &parts,
         0, reason);
  return KEEL_OK;
}

int keel__rt_remote_unlink(keel_proc *self, keel_term pid) {
  keel_pid_parts parts;
  if (!remote_parts(pid, &parts))
    return KEEL_EBADARG;
  rt_remote **pp = find_link(self->ext, &parts);
  if (pp == NULL)
    return KEEL_OK;
  rt_remote *r = *pp;
  *pp = r->next;
  free(r);
  tell(KEEL_DIST_UNLINK, self->pid_number, &parts, 0, KEEL_NONE);
  return KEEL_OK;
}

int keel__rt_remote_monitor(keel_proc *self, keel_term pid, uint64_t num) {
  keel_pid_parts parts;
  if (!remote_parts(pid, &parts))
    return KEEL_EBADARG;
  rt_ext *x = keel__rt_ext(self);
  if (x == NULL)
    return KEEL_ENOMEM;
  uint32_t conn;
  int rc = attach(self, x, parts.node, &conn);
  if (rc != KEEL_OK)
    return rc;
  if (conn == 0) /* G18: at once {'DOWN', Ref, process, Pid, noconnection} */
    return queue_down(self, &parts, num);
  if (record(x, &parts, false, num, conn) == NULL)
    return KEEL_ENOMEM;
  tell(KEEL_DIST_MONITOR, self->pid_number, &parts, num, KEEL_NONE);
  return KEEL_OK;
}

bool keel__rt_remote_demonitor(keel_proc *self, uint64_t num) {
  if (self->ext == NULL)
    return false;
  for (rt_remote **pp = &self->ext->remote; *pp != NULL; pp = &(*pp)->next) {
    rt_remote *r = *pp;
    if (!r->link && r->ref == num) {
      *pp = r->next;
      tell(KEEL_DIST_DEMONITOR, self->pid_number, &r->pid, num, KEEL_NONE);
      free(r);
      return true;
    }
  }
  return false;
}

/* A link or monitor to a pid of a lost node fires (G18). */
static void fire(keel_proc *p, const rt_remote *r, bool *die) {
  if (!r->link) {
    (void)queue_down(p, &r->pid, r->ref);
    return;
  }
  if (!p->trap_exit) { /* noconnection is neither normal nor kill */
    p->exit_reason = noconnection();
    *die = true;
    return;
  }
  uint64_t buf[SCRATCH_WORDS];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, SCRATCH_WORDS);
  keel_term pid = keel_pid_make(&h, &r->pid);
  (void)queue_self(p, pid != KEEL_NONE ? keel_tuple(&h, 3, KEEL_ATOM(EXIT), pid,
                                                    noconnection())
                                       : KEEL_NONE);
}

void keel__rt_remote_nodedown(rt_node *n, keel_proc *p, rt_sig *sig,
                              bool *die) {
  (void)n;
  keel_term node = keel_atom_from_index((uint32_t)sig->key);
  uint32_t conn = (uint32_t)(sig->key >> 32);
  if (p->ext == NULL)
    return;
  for (rt_remote **pp = &p->ext->remote; *pp != NULL && !*die;) {
    rt_remote *r = *pp;
    /* Relations made on a later connection stay. */
    if (r->pid.node != node || (int32_t)(r->conn - conn) > 0) {
      pp = &r->next;
      continue;
    }
    *pp = r->next;
    fire(p, r, die);
    free(r);
  }
}

void keel__rt_remote_on_death(keel_proc *p, bool notify) {
  rt_ext *x = p->ext;
  if (x == NULL)
    return;
  while (x->remote != NULL) {
    rt_remote *r = x->remote;
    x->remote = r->next;
    if (notify)
      tell(r->link ? KEEL_DIST_EXIT : KEEL_DIST_DEMONITOR, p->pid_number,
           &r->pid, r->ref, r->link ? p->exit_reason : KEEL_NONE);
    free(r);
  }
}

/* ---- signals from other nodes ----------------------------------------- */

bool keel__rt_remote_link_exit(keel_proc *p, keel_term pid) {
  keel_pid_parts parts;
  rt_remote **pp = remote_parts(pid, &parts) ? find_link(p->ext, &parts) : NULL;
  if (pp == NULL)
    return false;
  rt_remote *r = *pp;
  *pp = r->next;
  free(r);
  return true;
}

bool keel__rt_remote_down(keel_proc *p, uint64_t num, keel_term pid) {
  keel_pid_parts parts;
  if (p->ext == NULL || !remote_parts(pid, &parts))
    return false;
  for (rt_remote **pp = &p->ext->remote; *pp != NULL; pp = &(*pp)->next) {
    rt_remote *r = *pp;
    if (!r->link && r->ref == num && same_pid(&r->pid, &parts)) {
      *pp = r->next;
      free(r);
      return true;
    }
  }
  return false;
}

/* Sends the signal of kind/flags/key carrying the message t to the local
 * process `to` (a dead one: nothing happens). */
static int send_from_remote(unsigned kind, unsigned flags, keel_term to,
                            uint64_t key, keel_term t) {
  rt_node *n = keel__rt;
  rt_sig *sig = t != KEEL_NONE
                    ? keel__rt_sig_new(n, kind, flags, RT_NO_PID, key, t)
                    : NULL;
  if (sig == NULL)
    return KEEL_ENOMEM;
  (void)keel__rt_sig_send(n, keel_pid_local_number(to), sig);
  return KEEL_OK;
}

static int check_from_remote(keel_term from, keel_term to, keel_term reason) {
  keel_pid_parts parts;
  if (keel__rt == NULL)
    return KEEL_ESTATE;
  if (!remote_parts(from, &parts) || !keel_is_local_pid(to))
    return KEEL_EBADARG;
  return reason == KEEL_NONE ? KEEL_EINVAL : KEEL_OK;
}

int keel_dist_exit(keel_term from, keel_term to, keel_term reason, bool link) {
  int rc = check_from_remote(from, to, reason);
  if (rc != KEEL_OK)
    return rc;
  keel_heap h;
  keel_heap_init(&h);
  keel_term t = keel_tuple(&h, 3, KEEL_ATOM(EXIT), from, reason);
  unsigned flags = link                        ? RT_SIGF_REMOTE
                   : reason == KEEL_ATOM(KILL) ? RT_SIGF_KILL
                                               : 0;
  rc = send_from_remote(RT_SIG_EXIT, flags, to, 0, t);
  keel_heap_destroy(&h);
  return rc;
}

int keel_dist_down(keel_term from, keel_term to, keel_term ref,
                   keel_term reason) {
  int rc = check_from_remote(from, to, reason);
  uint64_t num, owner;
  if (rc == KEEL_OK && !keel__rt_ref_decode(ref, &num, &owner))
    rc = KEEL_EBADARG;
  if (rc != KEEL_OK)
    return rc;
  keel_heap h;
  keel_heap_init(&h);
  keel_term t =
      keel_tuple(&h, 5, KEEL_ATOM(DOWN), ref, KEEL_ATOM(PROCESS), from, reason);
  rc = send_from_remote(RT_SIG_DOWN, RT_SIGF_REMOTE, to, num, t);
  keel_heap_destroy(&h);
  return rc;
}
