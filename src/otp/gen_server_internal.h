/*
 * gen_server_internal.h - what the server side and the client side of
 * gen_server share: the server's control block and the blocking-call
 * machinery (fiber callers wait in keel_receive; plain threads through a
 * proxy fiber).
 */
#ifndef KEEL_GEN_SERVER_INTERNAL_H
#define KEEL_GEN_SERVER_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "keel/gen_server.h"
#include "otp/sys_debug.h"

struct keel_gen_server {
  const keel_gen_server_module *mod;
  keel_proc *self;
  keel_term state;
  keel_term deferred;  /* messages held while suspended, newest first */
  keel_term parent;    /* the linked starter's pid, or KEEL_NONE */
  keel_term name;      /* registered or via name, or KEEL_NONE */
  keel_heap name_heap; /* holds a via name (a tuple) */
  int64_t hibernate_after;
  size_t compact_at; /* heap words that trigger an automatic compaction */
  bool fiber, started, suspended, trace, timed_out, hib_timer;
  bool trap_exit;
  bool replaying;  /* resume is handling held messages: no compaction */
  bool keep_stack; /* enter_loop: the block lives on the fiber's stack */
  /* Result of the running callback (set by the keel_gs_* helpers). */
  keel_term reply, reason, cont;
  bool has_reply, hibernate;
  int64_t timeout; /* -1: none */
  /* Fiber servers: receive timeout of the next wait (-1: infinity). */
  int64_t next_wait;
  keel__sysdbg dbg; /* sys:statistics and sys:log */
};

/* Atoms of the protocol. */
keel_term keel__gs_atom_init(void);   /* '$gen_init' */
keel_term keel__gs_atom_system(void); /* '$gen_system' */

/* C pointers inside request terms: a resource holding {tag, fn, arg}.
 * Only C code of this OS process can make one (a term from the wire or a
 * stray integer is refused), and the tag tells which request made it. */
typedef void (*keel__gs_fn)(void);
keel_term keel__gs_ptr_term(keel_heap *h, const void *tag, keel__gs_fn fn,
                            const void *arg);
bool keel__gs_ptr_get(keel_term t, const void *tag, keel__gs_fn *fn,
                      const void **arg);
/* Tags of the sys requests carrying pointers. */
extern const char keel__gs_tag_replace_state;
extern const char keel__gs_tag_change_code;

/* Runs fn(self, arg) in a process able to block: directly when the caller
 * is a fiber process; in a proxy fiber while the calling plain thread
 * waits; KEEL_ESTATE from a handler process. Returns fn's result. */
typedef int (*keel__gs_blocking_fn)(keel_proc *self, void *arg);
int keel__gs_run_blocking(keel__gs_blocking_fn fn, void *arg);

/* A call with tag ('$gen_call' or '$gen_system') made by the fiber self:
 * see keel_gen_server_call. */
int keel__gs_call_from(keel_proc *self, keel_term tag, keel_term server,
                       keel_term request, int64_t timeout_ms, keel_heap *h,
                       keel_term *reply);

/* A blocking call with tag from any caller (see keel__gs_run_blocking). */
int keel__gs_call(keel_term tag, keel_term server, keel_term request,
                  int64_t timeout_ms, keel_heap *h, keel_term *reply);

/* Spawns a behaviour process running mod with the options o (linked to
 * the caller when link; parent: the linked starter or KEEL_NONE). The
 * process answers {'$gen_init', Ack, Arg} as a gen_server does. */
typedef int (*keel__gs_spawn_fn)(const void *mod, const keel_gen_server_opts *o,
                                 bool link, keel_term parent, keel_term *pid);
/* keel_gen_server_start after its argument checks, for any behaviour whose
 * process spawn makes (gen_statem too). */
int keel__gs_start(keel__gs_spawn_fn spawn, const void *mod, keel_term arg,
                   const keel_gen_server_opts *o, keel_term *pid);

/* A sys request {Tag, Ptr, Extra} whose Ptr carries (fn, arg) with tag
 * ptag; the answer ok is KEEL_OK, {error, Code} is Code. */
int keel__gs_sys_ptr(keel_term server, const char *tag, const void *ptag,
                     keel__gs_fn fn, const void *arg, keel_term extra,
                     int64_t tmo);

/* Body of a fiber server, and the handler of a handler server. */
void keel__gs_fiber_main(keel_proc *self, void *arg);
keel_handler_status keel__gs_handler(keel_proc *self, keel_term msg,
                                     void *state);
/* The receive loop of a fiber server whose init is done. */
void keel__gs_loop(keel_proc *self, keel_gen_server *gs);

/* The process terminate callback of every server: frees the block. */
void keel__gs_free(keel_proc *self, keel_term reason, void *state);

#endif /* KEEL_GEN_SERVER_INTERNAL_H */
