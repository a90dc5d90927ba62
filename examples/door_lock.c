/* A code lock, as the one of OTP's gen_statem documentation:
 *
 *   callback_mode() -> [state_functions, state_enter].
 *   locked(enter, _Old, Data) -> {keep_state, Data#{buttons := []}};
 *   locked({call, From}, {button, B}, #{code := Code} = Data) ->
 *       case [B | Buttons] of Code -> {next_state, open, Data, [{reply, From,
 * open}]};
 *       ...
 *   open(enter, _Old, _Data) -> {keep_state_and_data, [{state_timeout, 100,
 * lock}]}; open(state_timeout, lock, Data) -> {next_state, locked, Data};
 *
 * The data is {Code, Entered}: the code and the buttons pressed so far,
 * as integers (123 for 1, 2, 3; the code has three digits). Buttons are calls
 * answered with the state they leave the lock in; the call wait_locked is
 * postponed while the door is open, so it is answered once it is locked again.
 */
#include <keel/gen_statem.h>
#include <stdio.h>

static int64_t ival(keel_term t) {
  int64_t v = 0;
  (void)keel_get_int64(t, &v);
  return v;
}

static keel_gsm_ret locked(keel_gen_statem *sm, keel_term type,
                           keel_term content, keel_term *data) {
  keel_heap *h = keel_gsm_heap(sm);
  keel_term code = keel_tuple_get(*data, 0), from;
  if (keel_gsm_kind_of(type, &from) == KEEL_GSM_ENTER) { /* forget buttons */
    *data = keel_tuple(h, 2, code, keel_small(0));
    return keel_gsm_keep_state(sm);
  }
  if (keel_gsm_kind_of(type, &from) != KEEL_GSM_CALL)
    return keel_gsm_keep_state(sm);
  if (content == keel_atom("wait_locked")) {
    keel_gsm_reply(sm, from, keel_atom("locked"));
    return keel_gsm_keep_state(sm);
  }
  /* {button, B} */
  /* the last three buttons */
  int64_t entered =
      (ival(keel_tuple_get(*data, 1)) * 10 + ival(keel_tuple_get(content, 1))) %
      1000;
  if (entered == ival(code)) {
    keel_gsm_reply(sm, from, keel_atom("open"));
    return keel_gsm_next_state(sm, keel_atom("open"));
  }
  *data = keel_tuple(h, 2, code, keel_int(h, entered));
  keel_gsm_reply(sm, from, keel_atom("locked"));
  return keel_gsm_keep_state(sm);
}

static keel_gsm_ret open(keel_gen_statem *sm, keel_term type, keel_term content,
                         keel_term *data) {
  (void)data;
  keel_term from;
  switch (keel_gsm_kind_of(type, &from)) {
  case KEEL_GSM_ENTER: /* lock again after 100 ms */
    keel_gsm_state_timeout(sm, 100, keel_atom("lock"));
    return keel_gsm_keep_state(sm);
  case KEEL_GSM_STATE_TIMEOUT:
    printf("door: locking again\n");
    return keel_gsm_next_state(sm, keel_atom("locked"));
  case KEEL_GSM_CALL: /* buttons do nothing while open */
    if (content == keel_atom("wait_locked")) {
      keel_gsm_postpone(sm); /* retried once locked */
      return keel_gsm_keep_state(sm);
    }
    keel_gsm_reply(sm, from, keel_atom("open"));
    return keel_gsm_keep_state(sm);
  default:
    return keel_gsm_keep_state(sm);
  }
}

static keel_gsm_ret init(keel_gen_statem *sm, keel_term code, keel_term *state,
                         keel_term *data) {
  *state = keel_atom("locked");
  *data = keel_tuple(keel_gsm_heap(sm), 2, code, keel_small(0));
  return keel_gsm_ok(sm);
}

static const keel_gsm_state_entry door_states[] = {
    {"locked", locked}, {"open", open}, {NULL, NULL}};

static const keel_gen_statem_module door = {.version =
                                                KEEL_GEN_STATEM_MODULE_V1,
                                            .name = "door",
                                            .mode = KEEL_GSM_STATE_FUNCTIONS,
                                            .state_enter = true,
                                            .init = init,
                                            .states = door_states};

static keel_term press(keel_heap *h, int b) {
  keel_term r = KEEL_NONE;
  if (keel_gen_statem_call(keel_atom("door"), keel_build(h, "{button, ~i}", b),
                           KEEL_GEN_SERVER_CALL_TIMEOUT, h, &r) != KEEL_OK)
    return KEEL_NONE;
  printf("button %d -> ", b);
  keel_fprint(stdout, r, NULL);
  printf("\n");
  return r;
}

int main(void) {
  if (keel_node_start(NULL) != KEEL_OK)
    return 1;
  keel_heap h;
  keel_heap_init(&h);
  keel_gen_statem_opts opts = {.name = keel_atom("door")};
  int rc = keel_gen_statem_start(&door, keel_small(123), &opts, NULL);
  int pressed[] = {9, 1, 2, 3};
  for (size_t i = 0; rc == KEEL_OK && i < 4; i++)
    if (press(&h, pressed[i]) == KEEL_NONE)
      rc = -1;
  /* answered once the state timeout has locked the door again: the
   * open state postpones it */
  keel_term st = KEEL_NONE;
  if (rc == KEEL_OK)
    rc = keel_gen_statem_call(keel_atom("door"), keel_atom("wait_locked"),
                              KEEL_GEN_SERVER_CALL_TIMEOUT, &h, &st);
  if (rc == KEEL_OK)
    printf("wait_locked -> locked\n");
  if (rc == KEEL_OK)
    rc = keel_gen_statem_stop(keel_atom("door"), KEEL_ATOM(NORMAL), 5000);
  keel_heap_destroy(&h);
  keel_node_stop();
  printf(rc == KEEL_OK ? "done\n" : "failed: %d\n", rc);
  return rc == KEEL_OK ? 0 : 1;
}
