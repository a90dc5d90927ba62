/*
 * signal.h - non-message signals (exit, link, unlink, monitor, demonitor,
 * down, alias messages) and the per-process tables they maintain
 * (internal).
 *
 * Every signal travels through the receiver's mailbox, the same MPSC queue
 * as its messages, so the signals and messages of one sender to one
 * receiver are handled in the order they were sent (G1) by construction.
 * A mailbox entry whose term is KEEL_NONE is not a message: its `extra`
 * word says what it is, a timer record (RT_ENTRY_TIMER, timer.h) or a
 * signal record (RT_ENTRY_SIGNAL, below).
 *
 * Link, monitor and alias state lives in a per-process table (rt_ext)
 * that only the process itself reads and writes, when it calls the API or
 * handles a signal: no locks. Links follow OTP's link protocol (OTP 23+):
 * each side keeps its own view (ACTIVE or UNLINKING with an id), unlink
 * is acknowledged, and exit signals that cross an unlink are ignored, so
 * the two sides always end up agreeing (G15).
 *
 * A sender of a signal also sets RT_SIGPEND in the receiver's control
 * word; the receiver then fetches its whole mailbox (messages go, in
 * order, to its inner queue) and handles every signal at its next run,
 * even with a long message backlog in front of them (G5).
 */
#ifndef KEEL_RUNTIME_SIGNAL_H
#define KEEL_RUNTIME_SIGNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/rt_internal.h"

/* Kinds of KEEL_NONE mailbox entries (their `extra` word). */
#define RT_ENTRY_TIMER ((uintptr_t)0)
#define RT_ENTRY_SIGNAL ((uintptr_t)1)

enum rt_sig_kind {
  RT_SIG_EXIT = 1,   /* exit(P, R), or a linked process's death */
  RT_SIG_LINK,       /* from wants a link */
  RT_SIG_UNLINK,     /* from drops its link; key = unlink id */
  RT_SIG_UNLINK_ACK, /* answer to RT_SIG_UNLINK; key = its id */
  RT_SIG_MONITOR,    /* from monitors us; key = ref number */
  RT_SIG_DEMONITOR,  /* from drops its monitor key */
  RT_SIG_DOWN,       /* the monitored process `from` is dead */
  RT_SIG_ALIAS_MSG,  /* a message sent to alias key */
  RT_SIG_MARK,       /* a receive mark (fiber.c): a position, never handled;
                        key = 1 once it has moved to the inner queue */
  RT_SIG_INFO,       /* introspection asks the queue length; key: the
                        rt_info_req (introspect.c) */
  RT_SIG_NODEDOWN    /* a connection ended (remote.c); key: connection
                        number << 32 | node atom index */
};

/* A question to a process (keel_process_info's queue length), shared by
 * the asker and the process until both let go of it. */
typedef struct rt_info_req {
  _Atomic uint32_t state; /* 0 pending, 1 answered, 2 the process is gone */
  _Atomic uint32_t refs;  /* 2 at first: asker and answerer */
  uint64_t qlen;
  /* keel_process_relations: room for cap pid numbers per kind in rel
   * (links, then monitors, then monitored_by; cap 0: not asked), and how
   * many of each the process has (the first cap of each are stored). */
  uint32_t cap;
  uint32_t count[3];
  uint64_t rel[];
} rt_info_req;

/* Fills req's relation lists from p's table (owner, handling the INFO
 * signal). */
void keel__rt_info_relations(rt_info_req *req, const keel_proc *p);

/* Answers req (qlen; dead: the process is gone) and lets go of it. */
void keel__rt_info_answer(rt_info_req *req, uint64_t qlen, bool dead);
/* Lets go of req (the last one frees it). */
void keel__rt_info_release(rt_info_req *req);
/* Messages in p's inner queue (owner). */
uint64_t keel__rt_inner_count(const keel_proc *p);

/* Flags of a signal. */
#define RT_SIGF_LINK 1u  /* EXIT: because of a link */
#define RT_SIGF_KILL 2u  /* EXIT: exit(P, kill): untrappable */
#define RT_SIGF_ALIAS 4u /* MONITOR: the ref is also an alias (pid ref) */
/* EXIT: key holds the (immediate) reason and msg is NULL: the message is
 * made, in the record itself, only for a receiver that traps. */
#define RT_SIGF_IMM 8u
/* EXIT: through a link to a pid of another node; DOWN: of a monitor of
 * one (remote.c). */
#define RT_SIGF_REMOTE 16u
/* MONITOR: the record is shared with the monitoring process, whose
 * monitor entry points to it (mstate below). */
#define RT_SIGF_SHARED 32u

/* States of a shared MONITOR record (rt_sig.mstate). The target moves it
 * LIVE -> DONE when it handles (or drops) the request; the record then
 * belongs to the monitoring process, which frees it or reuses it as its
 * DEMONITOR signal. The monitoring process ending the monitor first
 * moves it LIVE -> CANCELLED: nothing more is sent, and the target, on
 * meeting the record, frees it without handling it (a monitor and its
 * demonitor that the target has not seen cancel out). */
#define RT_MON_LIVE 0u
#define RT_MON_DONE 1u
#define RT_MON_CANCELLED 2u

typedef struct rt_sig {
  /* Mailbox header: same layout as rt_msg's (term == KEEL_NONE). */
  rt_mnode link;
  keel_term term;
  uintptr_t extra; /* RT_ENTRY_SIGNAL */
  uint8_t kind;
  uint8_t flags;
  _Atomic uint32_t mstate; /* shared MONITOR records: RT_MON_* */
  uint64_t from;           /* pid number of the sender (RT_NO_PID: none) */
  uint64_t key;            /* ref number, unlink id */
  rt_msg *msg; /* EXIT, DOWN, ALIAS_MSG: the message it may become */
} rt_sig;

static inline bool rt_entry_is_signal(const rt_msg *m) {
  return m->term == KEEL_NONE && m->extra == RT_ENTRY_SIGNAL;
}

/* ---- per-process table ---------------------------------------------- */

/* Entry kinds, in the top two bits of the key. */
#define RT_EK_SHIFT 62
#define RT_EK_ALIAS UINT64_C(0)  /* key: alias ref number */
#define RT_EK_LINK UINT64_C(1)   /* key: peer pid number */
#define RT_EK_MON UINT64_C(2)    /* we monitor; key: ref number */
#define RT_EK_MON_BY UINT64_C(3) /* we are monitored; key: ref number */
#define RT_EK_KEY(kind, v) (((kind) << RT_EK_SHIFT) | (v))
#define RT_EK_VAL_MASK ((UINT64_C(1) << RT_EK_SHIFT) - 1)

/* Link states. */
#define RT_LINK_ACTIVE 1u
#define RT_LINK_UNLINKING 2u

/* Monitor entry flags. */
#define RT_MONF_ALIAS 1u       /* the ref is an alias too */
#define RT_MONF_REPLY_DEMON 2u /* first alias message ends both */

typedef struct rt_ent {
  uint64_t key;  /* 0: empty */
  uint64_t peer; /* LINK: unlink id; MON/MON_BY: the other pid number */
  uint32_t state;
  uint32_t flags;
  rt_sig *rec; /* MON: its shared MONITOR record (RT_SIGF_SHARED), or NULL */
} rt_ent;

typedef struct rt_ext {
  rt_ent *tab; /* open addressing, linear probing, power-of-two size */
  uint32_t cap, n;
  uint32_t nlinks, nmons, nmon_by, naliases;
  uint64_t unlink_seq;
  struct rt_remote *remote; /* links and monitors to other nodes' pids */
  bool dist_known;          /* listed for keel_dist_nodedown (remote.c) */
} rt_ext;

/* The process's table, created on first use (NULL on out-of-memory). */
rt_ext *keel__rt_ext(keel_proc *p);
/* Frees p's table. */
void keel__rt_ext_free(keel_proc *p);
/* Empties p's table at its death. A small one stays with the process
 * slot for its next process (no free on the dying thread, no malloc at
 * the next spawn_link or first monitor); a grown one is freed. */
void keel__rt_ext_clear(keel_proc *p);
rt_ent *keel__rt_ent_find(rt_ext *x, uint64_t key);
/* Inserts key (absent) and returns its entry, or NULL on out-of-memory. */
rt_ent *keel__rt_ent_add(rt_ext *x, uint64_t key);
void keel__rt_ent_del(rt_ext *x, rt_ent *e);

/* Inner queue (owner-only). */
void keel__rt_inner_append(keel_proc *p, rt_msg *m);
rt_msg *keel__rt_inner_pop(keel_proc *p);
/* Unlinks m, whose predecessor in the inner queue is prev (NULL: m is
 * the head). */
void keel__rt_inner_unlink(keel_proc *p, rt_msg *prev, rt_msg *m);
static inline rt_msg *rt_msg_next(const rt_msg *m) {
  return (rt_msg *)(void *)atomic_load_explicit(&m->link.next,
                                                memory_order_relaxed);
}
static inline void rt_msg_set_next(rt_msg *m, rt_msg *next) {
  atomic_store_explicit(&m->link.next, next == NULL ? NULL : &next->link,
                        memory_order_relaxed);
}

/* ---- signals ----------------------------------------------------------- */

/* How keel__rt_mon_end tells the target. */
typedef enum rt_mon_send {
  RT_MON_SEND_NONE = 0, /* only let go of the shared record */
  RT_MON_SEND_LAZY = 1  /* a lazy DEMONITOR (keel__rt_sig_send_lazy) */
} rt_mon_send;

/* Ends the monitor of entry e of p (the monitoring side; the caller
 * removes e): sends the target its DEMONITOR as `send` says when the
 * target has seen the request, else only lets go of the shared record. */
void keel__rt_mon_end(rt_node *n, keel_proc *p, rt_ent *e, rt_mon_send send);

/* Handles a signal popped by p (running, owner thread). Returns the
 * message it turned into (the caller handles then frees it), or NULL.
 * When the signal kills p, sets p->exit_reason and *die. Frees sig. */
rt_msg *keel__rt_sig_handle(rt_node *n, keel_proc *p, rt_sig *sig, bool *die);

/* Fetches p's whole mailbox into its inner queue, handling every signal
 * on the way (messages they turn into are queued in order too). Returns
 * true when a signal killed p (p->exit_reason is set; the rest of the
 * mailbox is left for the death path). Owner-only. */
bool keel__rt_sig_drain(rt_node *n, keel_proc *p);

/* Whether p has signals waiting (RT_SIGPEND), clearing the flag. */
static inline bool keel__rt_sig_pending_take(keel_proc *p) {
  if (!(atomic_load_explicit(&p->ctl, memory_order_relaxed) & RT_SIGPEND))
    return false;
  atomic_fetch_and_explicit(&p->ctl, ~RT_SIGPEND, memory_order_acq_rel);
  return true;
}

/* Next message (or timer record) for p to handle, from its inner queue
 * or its mailbox; signals met on the way are handled. NULL when there is
 * none for now, or when a signal killed p (*die set). Owner-only. */
rt_msg *keel__rt_next_entry(rt_node *n, keel_proc *p, bool *die);

/* Death of p, after EXITING is set and the pins have drained: releases
 * the name, handles the signals left in the mailbox and inner queue and
 * frees them, notifies links and monitors with p->exit_reason (not when
 * the node is stopping), frees the table. */
void keel__rt_sig_on_death(rt_node *n, keel_proc *p);

/* Sends a signal from the calling context. Returns true when delivered,
 * false when the receiver is dead (sig is then freed by this call). */
bool keel__rt_sig_send(rt_node *n, uint64_t to, rt_sig *sig);
/* keel__rt_sig_send for a monitor or demonitor: an idle receiver is not
 * woken for it (keel__rt_deliver_lazy). */
bool keel__rt_sig_send_lazy(rt_node *n, uint64_t to, rt_sig *sig);
/* A new signal record; msg (may be KEEL_NONE) is copied into sig->msg.
 * NULL on out-of-memory. */
rt_sig *keel__rt_sig_new(rt_node *n, unsigned kind, unsigned flags,
                         uint64_t from, uint64_t key, keel_term msg);
void keel__rt_sig_free(rt_sig *sig);
/* An exit signal {'EXIT', From, Reason} from `from` (RT_NO_PID: From is
 * 'undefined'), flags RT_SIGF_*. NULL on out-of-memory. */
rt_sig *keel__rt_exit_sig_new(rt_node *n, unsigned flags, uint64_t from,
                              keel_term reason);
/* A signal whose receiver turned out to be dead when it was delivered
 * late (simulation): answers as a dying process would (noproc for link
 * and monitor requests, an acknowledgement for an unlink), frees sig. */
void keel__rt_sig_refused(rt_node *n, uint64_t to, rt_sig *sig);
/* Sends {'EXIT', From, Reason} as an exit signal (flags RT_SIGF_*). */
void keel__rt_send_exit(rt_node *n, uint64_t from, uint64_t to,
                        keel_term reason, unsigned flags);
/* Queues to self the 'DOWN' (reason noproc) of its monitor ref on the
 * dead process target. */
void keel__rt_send_down_noproc(rt_node *n, keel_proc *self, uint64_t target,
                               uint64_t ref, bool alias);
/* Pids of other nodes (remote.c). Called by the owner (self is the
 * calling process) with pid a pid that is not local. */
int keel__rt_remote_link(keel_proc *self, keel_term pid);
int keel__rt_remote_unlink(keel_proc *self, keel_term pid);
/* keel_exit to a pid of another node (self may be NULL: not a process). */
int keel__rt_remote_exit(keel_proc *self, keel_term pid, keel_term reason);
/* Records (or, the node being down, answers at once with 'DOWN') monitor
 * number num of pid; the ref term is already built. */
int keel__rt_remote_monitor(keel_proc *self, keel_term pid, uint64_t num);
/* Ends self's monitor num of a remote pid; false when there is none. */
bool keel__rt_remote_demonitor(keel_proc *self, uint64_t num);
/* Whether p's link to the remote pid ended by an exit signal through it
 * was active (it is removed). */
bool keel__rt_remote_link_exit(keel_proc *p, keel_term pid);
/* Whether p's monitor num of the remote pid was active (it is removed). */
bool keel__rt_remote_down(keel_proc *p, uint64_t num, keel_term pid);
/* Handles RT_SIG_NODEDOWN for p (may kill p: *die). */
void keel__rt_remote_nodedown(rt_node *n, keel_proc *p, rt_sig *sig, bool *die);
/* At p's death: tells the distribution layer (unless the node is
 * stopping: notify false) and frees p's remote relations. */
void keel__rt_remote_on_death(keel_proc *p, bool notify);
/* Forgets every connection (node stop). */
void keel__rt_remote_reset(void);

/* Pins the process numbered num if it is alive (its death then waits for
 * keel__rt_unpin); NULL when it is dead. */
keel_proc *keel__rt_pin(rt_node *n, uint64_t num);
void keel__rt_unpin(keel_proc *p);

/* keel_send to something other than a local pid: a registered name
 * (*dest is replaced by its pid and 1 returned), an alias (the message is
 * sent: KEEL_OK), else an error. */
int keel__rt_send_other(rt_node *n, keel_term *dest, keel_term msg);

/* Registered names (names.c): clears the name p holds, if any. */
void keel__rt_name_release(rt_node *n, keel_proc *p);
int keel__rt_names_init(rt_node *n);
void keel__rt_names_destroy(rt_node *n);

/* "No process": the sender of a signal from a thread that is not a
 * process, the owner of a plain ref (pid numbers are below 2^58). */
#define RT_NO_PID UINT64_MAX

/* References (ref.c). */
uint64_t keel__rt_ref_next(rt_node *n);
/* The ref term of number num in h: a plain ref, or, when owner is not
 * RT_NO_PID, a pid ref (alias) naming the process numbered owner. */
keel_term keel__rt_ref_term(keel_heap *h, uint64_t num, uint64_t owner);
/* Decodes a local ref made by keel__rt_ref_term: its number and, for a
 * pid ref, its owner (RT_NO_PID for a plain one). False for other
 * terms. */
bool keel__rt_ref_decode(keel_term t, uint64_t *num, uint64_t *owner);

#endif /* KEEL_RUNTIME_SIGNAL_H */
