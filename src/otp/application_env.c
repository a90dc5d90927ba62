/*
 * application_env.c - the environment of applications: defaults from the
 * descriptor, environment variables KEEL_<APP>_<KEY> read at load, the
 * config file ([{App, [{Key, Value}]}]) and set_env/unset_env, looked up
 * in that order reversed (see keel/application.h).
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "otp/application_internal.h"

extern char **environ;

/* The config file's term (layer 3), in its own heap. */
static keel_heap file_heap;
static bool file_heap_ready;
static keel_term file_cfg = KEEL_NIL;

/* ---- lists of {Key, Value} ---------------------------------------------- */

/* The entry of key in list (a {Key, Value} or {Key}), or KEEL_NONE. */
static keel_term kv_find(keel_term list, keel_term key) {
  for (keel_term l = list; keel_is_cons(l); l = keel_tl(l)) {
    keel_term e = keel_hd(l);
    if (keel_is_tuple(e) && keel_tuple_arity(e) >= 1 &&
        keel_tuple_get(e, 0) == key)
      return e;
  }
  return KEEL_NONE;
}

/* The file layer's list for app name, or []. */
static keel_term file_env(keel_term name) {
  keel_term e = kv_find(file_cfg, name);
  return e != KEEL_NONE && keel_tuple_arity(e) == 2 ? keel_tuple_get(e, 1)
                                                    : KEEL_NIL;
}

/* ---- load --------------------------------------------------------------- */

static int parse_value(keel_heap *h, const char *text, keel_term *out) {
  return keel_parse(h, text, strlen(text), out, NULL);
}

static int load_defaults(app_rec *r) {
  keel_term list = KEEL_NIL;
  for (size_t i = r->app->nenv; i-- > 0;) {
    const keel_app_env_default *d = &r->app->env[i];
    keel_term v;
    if (d->key == NULL || d->value == NULL)
      return KEEL_EINVAL;
    int rc = parse_value(&r->env_heap, d->value, &v);
    if (rc != KEEL_OK)
      return rc == KEEL_ENOMEM ? rc : KEEL_EINVAL;
    keel_term k = keel_atom(d->key);
    if (k == KEEL_NONE)
      return KEEL_EINVAL;
    keel_term e = keel_tuple(&r->env_heap, 2, k, v);
    list = e != KEEL_NONE ? keel_cons(&r->env_heap, e, list) : KEEL_NONE;
    if (list == KEEL_NONE)
      return KEEL_ENOMEM;
  }
  r->defaults = list;
  return KEEL_OK;
}

/* "KEEL_" + the app name upper-cased, non-alphanumerics as '_', + '_'. */
static bool env_prefix(const char *app, char *buf, size_t n) {
  size_t len = strlen(app);
  if (len + 7 > n)
    return false;
  memcpy(buf, "KEEL_", 5);
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)app[i];
    buf[5 + i] = isalnum(c) ? (char)toupper(c) : '_';
  }
  buf[5 + len] = '_';
  buf[6 + len] = '\0';
  return true;
}

/* One variable NAME=value whose name starts with the prefix. */
static int env_var(app_rec *r, const char *var, size_t plen) {
  const char *eq = strchr(var, '=');
  if (eq == NULL || eq == var + plen)
    return KEEL_OK;
  char key[KEEL_ATOM_MAX_CHARS + 1];
  size_t klen = (size_t)(eq - var) - plen;
  if (klen > KEEL_ATOM_MAX_CHARS)
    return KEEL_OK;
  for (size_t i = 0; i < klen; i++)
    key[i] = (char)tolower((unsigned char)var[plen + i]);
  key[klen] = '\0';
  keel_term k = keel_atom(key), v;
  if (k == KEEL_NONE || kv_find(r->envvars, k) != KEEL_NONE)
    return KEEL_OK;
  int rc = parse_value(&r->env_heap, eq + 1, &v);
  if (rc == KEEL_ENOMEM)
    return rc;
  if (rc != KEEL_OK) /* not a term: the text, as a binary */
    v = keel_binary(&r->env_heap, eq + 1, strlen(eq + 1));
  keel_term e = v != KEEL_NONE ? keel_tuple(&r->env_heap, 2, k, v) : KEEL_NONE;
  keel_term l =
      e != KEEL_NONE ? keel_cons(&r->env_heap, e, r->envvars) : KEEL_NONE;
  if (l == KEEL_NONE)
    return KEEL_ENOMEM;
  r->envvars = l;
  return KEEL_OK;
}

static int load_envvars(app_rec *r) {
  char prefix[KEEL_ATOM_MAX_CHARS * 4 + 8];
  r->envvars = KEEL_NIL;
  if (!env_prefix(r->app->name, prefix, sizeof prefix))
    return KEEL_OK;
  size_t plen = strlen(prefix);
  for (char **e = environ; e != NULL && *e != NULL; e++) {
    if (strncmp(*e, prefix, plen) != 0)
      continue;
    int rc = env_var(r, *e, plen);
    if (rc != KEEL_OK)
      return rc;
  }
  return KEEL_OK;
}

int keel__app_env_load(app_rec *r) {
  keel_heap_init(&r->env_heap);
  keel_heap_init(&r->ov_heap);
  r->defaults = r->envvars = r->overrides = KEEL_NIL;
  int rc = load_defaults(r);
  if (rc == KEEL_OK)
    rc = load_envvars(r);
  if (rc != KEEL_OK)
    keel__app_env_free(r);
  return rc;
}

void keel__app_env_free(app_rec *r) {
  keel_heap_destroy(&r->env_heap);
  keel_heap_destroy(&r->ov_heap);
  r->defaults = r->envvars = r->overrides = KEEL_NIL;
}

/* ---- get / set / unset -------------------------------------------------- */

int keel_application_get_env(keel_term name, keel_term key, keel_heap *h,
                             keel_term *value) {
  if (h == NULL || value == NULL || !keel_is_atom(key))
    return KEEL_EINVAL;
  pthread_mutex_lock(&keel__app_lock);
  app_rec *r = keel__app_find(name);
  keel_term e = KEEL_NONE;
  if (r != NULL) {
    e = kv_find(r->overrides, key);
    if (e == KEEL_NONE)
      e = kv_find(r->envvars, key);
    if (e == KEEL_NONE)
      e = kv_find(file_env(name), key);
    if (e == KEEL_NONE)
      e = kv_find(r->defaults, key);
  }
  int rc = KEEL_ENOENT;
  if (e != KEEL_NONE && keel_tuple_arity(e) == 2) {
    *value = keel_term_copy(h, keel_tuple_get(e, 1));
    rc = *value != KEEL_NONE ? KEEL_OK : KEEL_ENOMEM;
  }
  pthread_mutex_unlock(&keel__app_lock);
  return rc;
}

/* Rebuilds r's overrides without key, then with entry (a {Key, Value} or
 * {Key}) in front. Lock held. */
static int put_override(app_rec *r, keel_term key, keel_term value) {
  keel_heap nh;
  keel_heap_init(&nh);
  keel_term list = KEEL_NIL;
  for (keel_term l = r->overrides; keel_is_cons(l); l = keel_tl(l)) {
    keel_term e = keel_hd(l);
    if (keel_tuple_get(e, 0) == key)
      continue;
    keel_term c = keel_term_copy(&nh, e);
    list = c != KEEL_NONE ? keel_cons(&nh, c, list) : KEEL_NONE;
    if (list == KEEL_NONE)
      break;
  }
  keel_term e = KEEL_NONE;
  if (list != KEEL_NONE) {
    keel_term v = value != KEEL_NONE ? keel_term_copy(&nh, value) : KEEL_NONE;
    e = value == KEEL_NONE ? keel_tuple(&nh, 1, key)
        : v != KEEL_NONE   ? keel_tuple(&nh, 2, key, v)
                           : KEEL_NONE;
  }
  list = e != KEEL_NONE ? keel_cons(&nh, e, list) : KEEL_NONE;
  if (list == KEEL_NONE) {
    keel_heap_destroy(&nh);
    return KEEL_ENOMEM;
  }
  keel_heap_destroy(&r->ov_heap);
  r->ov_heap = nh;
  r->overrides = list;
  return KEEL_OK;
}

static int override(keel_term name, keel_term key, keel_term value) {
  if (!keel_is_atom(key))
    return KEEL_EINVAL;
  pthread_mutex_lock(&keel__app_lock);
  app_rec *r = keel__app_find(name);
  int rc = r != NULL ? put_override(r, key, value) : KEEL_ENOENT;
  pthread_mutex_unlock(&keel__app_lock);
  return rc;
}

int keel_application_set_env(keel_term name, keel_term key, keel_term value) {
  if (value == KEEL_NONE)
    return KEEL_EINVAL;
  return override(name, key, value);
}

int keel_application_unset_env(keel_term name, keel_term key) {
  return override(name, key, KEEL_NONE);
}

/* ---- config file -------------------------------------------------------- */

static void say(char *why, size_t n, const char *fmt, ...) {
  if (why == NULL || n == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  (void)vsnprintf(why, n, fmt, ap);
  va_end(ap);
}

/* Reads the whole file into a NUL-terminated buffer. */
static int slurp(const char *path, char **out, size_t *len, char *why,
                 size_t n) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    say(why, n, "%s: cannot open: %s", path, strerror(errno));
    return KEEL_EIO;
  }
  char *buf = malloc(KEEL_APPLICATION_CONFIG_MAX + 1);
  if (buf == NULL) {
    fclose(f);
    return KEEL_ENOMEM;
  }
  size_t got = fread(buf, 1, KEEL_APPLICATION_CONFIG_MAX + 1, f);
  int rc = ferror(f) ? KEEL_EIO : KEEL_OK;
  fclose(f);
  if (rc == KEEL_OK && got > KEEL_APPLICATION_CONFIG_MAX) {
    say(why, n, "%s: larger than %u bytes", path, KEEL_APPLICATION_CONFIG_MAX);
    rc = KEEL_ELIMIT;
  } else if (rc != KEEL_OK) {
    say(why, n, "%s: read error", path);
  }
  if (rc != KEEL_OK) {
    free(buf);
    return rc;
  }
  buf[got] = '\0';
  *out = buf;
  *len = got;
  return KEEL_OK;
}

static unsigned line_of(const char *text, size_t off) {
  unsigned line = 1;
  for (size_t i = 0; i < off; i++)
    line += text[i] == '\n';
  return line;
}

/* Whether list is a proper list of {Atom, X}; *bad = index of the first
 * element that is not (when false). */
static bool pairs_of_atoms(keel_term list, size_t *bad) {
  size_t i = 0;
  keel_term l = list;
  for (; keel_is_cons(l); l = keel_tl(l), i++) {
    keel_term e = keel_hd(l);
    if (!keel_is_tuple(e) || keel_tuple_arity(e) != 2 ||
        !keel_is_atom(keel_tuple_get(e, 0))) {
      *bad = i;
      return false;
    }
  }
  *bad = i;
  return keel_is_nil(l);
}

static int check_shape(keel_term cfg, char *why, size_t n) {
  size_t bad;
  if (!pairs_of_atoms(cfg, &bad)) {
    say(why, n, "config element %zu is not {App, [{Key, Value}]}", bad + 1);
    return KEEL_EBADARG;
  }
  size_t i = 0;
  for (keel_term l = cfg; keel_is_cons(l); l = keel_tl(l), i++) {
    keel_term app = keel_hd(l);
    if (!pairs_of_atoms(keel_tuple_get(app, 1), &bad)) {
      say(why, n, "config element %zu (%s): entry %zu is not {Key, Value}",
          i + 1, keel_atom_name(keel_tuple_get(app, 0), NULL), bad + 1);
      return KEEL_EBADARG;
    }
  }
  return KEEL_OK;
}

static int parse_config(const char *path, const char *text, size_t len,
                        keel_heap *h, keel_term *cfg, char *why, size_t n) {
  int rc = keel_parse(h, text, len, cfg, NULL);
  if (rc == KEEL_EPARSE) {
    size_t off = 0;
    keel_term t;
    int rc2 = keel_parse(h, text, len, &t, &off);
    if (rc2 == KEEL_OK) /* one term, then more text */
      say(why, n, "%s: line %u: text after the term", path, line_of(text, off));
    else
      say(why, n, "%s: line %u: syntax error", path, line_of(text, off));
  } else if (rc == KEEL_ELIMIT) {
    say(why, n, "%s: nested too deep", path);
  }
  if (rc == KEEL_OK) {
    rc = check_shape(*cfg, why, n);
    if (rc != KEEL_OK && why != NULL && n > 0) {
      char tmp[256];
      (void)snprintf(tmp, sizeof tmp, "%s", why);
      say(why, n, "%s: %s", path, tmp);
    }
  }
  return rc;
}

int keel_application_read_config(const char *path, char *why, size_t whylen) {
  if (path == NULL)
    return KEEL_EINVAL;
  char *text;
  size_t len;
  int rc = slurp(path, &text, &len, why, whylen);
  if (rc != KEEL_OK)
    return rc;
  keel_heap h;
  keel_heap_init(&h);
  keel_term cfg = KEEL_NONE;
  rc = parse_config(path, text, len, &h, &cfg, why, whylen);
  free(text);
  if (rc != KEEL_OK) {
    keel_heap_destroy(&h);
    return rc;
  }
  /* A flat copy into a fresh heap keeps only the term. */
  keel_heap nh;
  keel_heap_init(&nh);
  keel_term c = keel_term_copy(&nh, cfg);
  keel_heap_destroy(&h);
  if (c == KEEL_NONE) {
    keel_heap_destroy(&nh);
    return KEEL_ENOMEM;
  }
  pthread_mutex_lock(&keel__app_lock);
  if (file_heap_ready)
    keel_heap_destroy(&file_heap);
  file_heap = nh;
  file_heap_ready = true;
  file_cfg = c;
  pthread_mutex_unlock(&keel__app_lock);
  return KEEL_OK;
}
