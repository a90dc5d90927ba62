/* Build a term, print it, encode it to ETF and decode it back. */
#include <keel/etf.h>
#include <keel/term.h>
#include <stdio.h>

int main(void) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term t = keel_build(&h, "{hello, ~s, [~i, ~f], #{lang => ~b}}", "world",
                           42, 2.5, "C");
  /* Prints {hello,"world",[42,2.5],#{lang => <<"C">>}} */
  keel_fprint(stdout, t, NULL);
  putchar('\n');

  keel_buf etf;
  keel_buf_init(&etf);
  keel_term back;
  int rc = keel_etf_encode(&etf, t, NULL);
  if (rc == KEEL_OK)
    rc = keel_etf_decode(&h, etf.data, etf.len, NULL, &back, NULL);
  if (rc == KEEL_OK)
    printf("%zu bytes of ETF, round-trip %s\n", etf.len,
           keel_eq_exact(t, back) ? "exact" : "differs");
  else
    fprintf(stderr, "error: %s\n", keel_strerror(rc));
  keel_buf_free(&etf);
  keel_heap_destroy(&h);
  return rc == KEEL_OK ? 0 : 1;
}
