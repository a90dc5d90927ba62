/*
 * child.c - a pubsub instance as a supervisor's child: an owner process
 * that stops the instance when it exits.
 */
#include <stdlib.h>

#include "keel/pubsub.h"
#include "keel/runtime.h"

typedef struct owner {
  keel_pubsub ps;
} owner;

static keel_handler_status owner_handle(keel_proc *self, keel_term msg,
                                        void *state) {
  (void)self;
  (void)msg;
  (void)state;
  return KEEL_CONTINUE;
}

static void owner_terminate(keel_proc *self, keel_term reason, void *state) {
  (void)self;
  (void)reason;
  owner *o = state;
  (void)keel_pubsub_stop(o->ps);
  free(o);
}

int keel_pubsub_child_start(keel_proc *sup, void *arg, keel_term extra,
                            keel_term *pid) {
  (void)sup;
  (void)extra;
  owner *o = malloc(sizeof *o);
  if (o == NULL)
    return KEEL_ENOMEM;
  int rc = keel_pubsub_start(arg, &o->ps);
  if (rc != KEEL_OK) {
    free(o);
    return rc;
  }
  keel_spawn_opts so = {.terminate = owner_terminate, .link = true};
  rc = keel_spawn(owner_handle, o, &so, pid);
  if (rc != KEEL_OK) {
    (void)keel_pubsub_stop(o->ps);
    free(o);
  }
  return rc;
}
