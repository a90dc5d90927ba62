/*
 * application_incl.c - what KEEL_APPLICATION_V2 descriptors add to the
 * controller: start phases (run in the master once the top supervisor is
 * up, the included applications' phases within their includer's, as
 * OTP's application_starter) and included applications (loaded with their
 * includer, never started on their own; their top supervisor is a child
 * in the includer's tree).
 */
#include <string.h>

#include "keel/application.h"
#include "keel/signals.h"
#include "otp/application_internal.h"

/* Deepest chain of included applications followed. */
#define INCL_DEPTH_MAX 16

const keel_application *const *keel__app_included(const keel_application *a) {
  return a->version >= KEEL_APPLICATION_V2 ? a->included_applications : NULL;
}

int keel__app_check_v2(const keel_application *app) {
  if (app->version != KEEL_APPLICATION_V2)
    return KEEL_OK;
  if (app->nphases > 0 &&
      (app->start_phases == NULL || app->start_phase == NULL))
    return KEEL_EINVAL;
  for (size_t i = 0; i < app->nphases; i++)
    if (app->start_phases[i].name == NULL)
      return KEEL_EINVAL;
  for (const keel_application *const *p = app->included_applications;
       p != NULL && *p != NULL; p++)
    if (*p == app || ((*p)->version != KEEL_APPLICATION_V1 &&
                      (*p)->version != KEEL_APPLICATION_V2))
      return KEEL_EINVAL;
  return KEEL_OK;
}

/* The phases as a list of {Phase, Arg}, in order, in r's env_heap. */
static int parse_phases(app_rec *r) {
  const keel_application *app = r->app;
  keel_heap *h = &r->env_heap;
  keel_term list = KEEL_NIL;
  for (size_t i = app->nphases; i-- > 0;) {
    const keel_app_phase *ph = &app->start_phases[i];
    const char *text = ph->arg != NULL ? ph->arg : "[]";
    keel_term arg = KEEL_NONE;
    size_t used = 0;
    int rc = keel_parse(h, text, strlen(text), &arg, &used);
    if (rc == KEEL_ENOMEM)
      return rc;
    keel_term name = keel_atom(ph->name);
    if (rc != KEEL_OK || name == KEEL_NONE)
      return KEEL_EINVAL;
    keel_term e = keel_tuple(h, 2, name, arg);
    list = e != KEEL_NONE ? keel_cons(h, e, list) : KEEL_NONE;
    if (list == KEEL_NONE)
      return KEEL_ENOMEM;
  }
  r->phases = list;
  return KEEL_OK;
}

int keel__app_load_v2(app_rec *r) {
  r->phases = KEEL_NIL;
  r->included_by = KEEL_NONE;
  r->inc_running = false;
  if (r->app->version != KEEL_APPLICATION_V2)
    return KEEL_OK;
  int rc = parse_phases(r);
  for (const keel_application *const *p = r->app->included_applications;
       rc == KEEL_OK && p != NULL && *p != NULL; p++) {
    keel_term n = keel_atom((*p)->name != NULL ? (*p)->name : "");
    app_rec *ir = keel__app_find(n);
    if (ir == NULL) {
      rc = keel__app_load_locked(*p);
      ir = rc == KEEL_OK ? keel__app_find(n) : NULL;
    } else if (ir->included_by != KEEL_NONE && ir->included_by != r->name) {
      rc = KEEL_EEXIST;
    } else if (ir->state != APP_LOADED || ir->inc_running) {
      rc = KEEL_ESTATE;
    }
    if (rc == KEEL_OK && ir != NULL)
      ir->included_by = r->name;
  }
  if (rc != KEEL_OK)
    keel__app_unload_v2(r->name);
  return rc;
}

bool keel__app_startable(const app_rec *r) {
  return r->included_by == KEEL_NONE;
}

bool keel__app_unload_ok(const app_rec *r) {
  if (r->inc_running)
    return false;
  app_rec *inc =
      r->included_by != KEEL_NONE ? keel__app_find(r->included_by) : NULL;
  return inc == NULL || inc->state == APP_LOADED;
}

void keel__app_unload_v2(keel_term name) {
  for (size_t i = 0; i < KEEL_APPLICATION_MAX; i++)
    if (keel__apps[i].state != APP_FREE && keel__apps[i].included_by == name)
      keel__apps[i].included_by = KEEL_NONE;
}

static void included_stopped(keel_term name, unsigned depth) {
  if (depth > INCL_DEPTH_MAX)
    return;
  for (size_t i = 0; i < KEEL_APPLICATION_MAX; i++) {
    app_rec *r = &keel__apps[i];
    if (r->state != APP_FREE && r->included_by == name && r->inc_running) {
      r->inc_running = false;
      r->sup = KEEL_NONE;
      r->cb_state = NULL;
      included_stopped(r->name, depth + 1);
    }
  }
}

void keel__app_included_stopped(keel_term name) {
  included_stopped(name, 0);
}

/* ---- starting an included application's tree ---------------------------- */

int keel_application_start_included(keel_proc *sup, void *arg, keel_term extra,
                                    keel_term *pid) {
  (void)sup;
  (void)extra;
  const keel_application *app = arg;
  if (app == NULL || pid == NULL || app->name == NULL)
    return KEEL_EINVAL;
  pthread_mutex_lock(&keel__app_lock);
  app_rec *r = keel__app_find(keel_atom(app->name));
  app_rec *inc = r != NULL && r->included_by != KEEL_NONE
                     ? keel__app_find(r->included_by)
                     : NULL;
  int rc = r == NULL || r->app != app ? KEEL_ENOENT
           : inc == NULL              ? KEEL_ESTATE
           : inc->state == APP_STARTING || inc->state == APP_RUNNING ||
                   inc->inc_running
               ? KEEL_OK
               : KEEL_ESTATE;
  keel_app_type type = inc != NULL ? inc->type : KEEL_APP_TEMPORARY;
  pthread_mutex_unlock(&keel__app_lock);
  if (rc != KEEL_OK)
    return rc;
  keel_term top = KEEL_NONE;
  void *cb = NULL;
  rc = app->start(app, type, &top, &cb);
  if (rc == KEEL_OK && !keel_is_local_pid(top))
    rc = KEEL_EBADARG;
  if (rc != KEEL_OK)
    return rc;
  pthread_mutex_lock(&keel__app_lock);
  r->type = type;
  r->sup = top;
  r->cb_state = cb;
  r->inc_running = true;
  pthread_mutex_unlock(&keel__app_lock);
  *pid = top;
  return KEEL_OK;
}

/* ---- start phases ----------------------------------------------------------
 */

/* The argument of phase in the list phases, or KEEL_NONE. */
static keel_term phase_arg(keel_term phases, keel_term phase) {
  for (keel_term l = phases; keel_is_cons(l); l = keel_tl(l))
    if (keel_tuple_get(keel_hd(l), 0) == phase)
      return keel_tuple_get(keel_hd(l), 1);
  return KEEL_NONE;
}

/* Phase `phase` of the applications app includes (and theirs). */
static int included_phase(const keel_application *app, keel_term phase,
                          keel_app_type type, unsigned depth) {
  if (depth > INCL_DEPTH_MAX)
    return KEEL_OK;
  const keel_application *const *p = keel__app_included(app);
  for (; p != NULL && *p != NULL; p++) {
    const keel_application *ia = *p;
    pthread_mutex_lock(&keel__app_lock);
    app_rec *r = keel__app_find(keel_atom(ia->name));
    bool run = r != NULL && r->app == ia && r->inc_running;
    keel_term arg = run ? phase_arg(r->phases, phase) : KEEL_NONE;
    void *cb = run ? r->cb_state : NULL;
    pthread_mutex_unlock(&keel__app_lock);
    if (!run)
      continue;
    int rc = KEEL_OK;
    if (arg != KEEL_NONE && ia->start_phase != NULL)
      rc = ia->start_phase(ia, phase, type, arg, cb);
    if (rc == KEEL_OK)
      rc = included_phase(ia, phase, type, depth + 1);
    if (rc != KEEL_OK)
      return rc;
  }
  return KEEL_OK;
}

int keel__app_run_phases(keel_term name, keel_app_type type, void *cb) {
  pthread_mutex_lock(&keel__app_lock);
  app_rec *r = keel__app_find(name);
  const keel_application *app = r != NULL ? r->app : NULL;
  keel_term phases = r != NULL ? r->phases : KEEL_NIL;
  pthread_mutex_unlock(&keel__app_lock);
  if (app == NULL || app->version != KEEL_APPLICATION_V2)
    return KEEL_OK;
  for (keel_term l = phases; keel_is_cons(l); l = keel_tl(l)) {
    keel_term ph = keel_tuple_get(keel_hd(l), 0);
    int rc = app->start_phase(app, ph, type, keel_tuple_get(keel_hd(l), 1), cb);
    if (rc == KEEL_OK)
      rc = included_phase(app, ph, type, 0);
    if (rc != KEEL_OK)
      return rc < 0 ? rc : KEEL_EINVAL;
  }
  return KEEL_OK;
}
