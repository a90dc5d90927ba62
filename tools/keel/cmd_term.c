/*
 * cmd_term.c - `keel term decode|encode|print`: conversions between the
 * external term format and Erlang term text.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "keel/buf.h"
#include "keel/etf.h"
#include "keel/term.h"

/* Options of the term subcommands, and the positional argument. */
typedef struct term_args {
  const char *ctx;  /* "term decode" etc., for messages */
  const char *arg;  /* the single positional argument, or NULL */
  bool safe;        /* decode --safe */
  int compressed;   /* encode --compressed[=N] */
  int minor;        /* encode --minor-version=N */
  bool allow_codec; /* encode options accepted */
  bool allow_safe;  /* --safe accepted */
} term_args;

/* Parses one "--name[=value]" option into a. Returns false on error. */
static bool parse_term_opt(term_args *a, const char *opt) {
  long v;
  if (a->allow_safe && strcmp(opt, "--safe") == 0) {
    a->safe = true;
  } else if (a->allow_codec && strcmp(opt, "--compressed") == 0) {
    a->compressed = 6;
  } else if (a->allow_codec && strncmp(opt, "--compressed=", 13) == 0) {
    if (!keel_cli_parse_long(opt + 13, 0, 9, &v)) {
      keel_cli_error(a->ctx, "--compressed takes a level from 0 to 9");
      return false;
    }
    a->compressed = (int)v;
  } else if (a->allow_codec && strncmp(opt, "--minor-version=", 16) == 0) {
    if (!keel_cli_parse_long(opt + 16, 1, 2, &v)) {
      keel_cli_error(a->ctx, "--minor-version must be 1 or 2");
      return false;
    }
    a->minor = (int)v;
  } else {
    keel_cli_error(a->ctx, "unknown option '%s'", opt);
    return false;
  }
  return true;
}

/* Parses argv[1..argc) into a: options start with "--" (until a bare
 * "--"), at most one positional argument. Returns false on error. */
static bool parse_term_args(term_args *a, int argc, char **argv) {
  bool opts_done = false;
  for (int i = 1; i < argc; i++) {
    const char *s = argv[i];
    if (!opts_done && strcmp(s, "--") == 0) {
      opts_done = true;
    } else if (!opts_done && strncmp(s, "--", 2) == 0) {
      if (!parse_term_opt(a, s))
        return false;
    } else if (a->arg == NULL) {
      a->arg = s;
    } else {
      keel_cli_error(a->ctx, "unexpected argument '%s'", s);
      return false;
    }
  }
  return true;
}

/* Reads the whole of f into a buffer. KEEL_OK or KEEL_EIO/KEEL_ENOMEM. */
static int read_all(FILE *f, keel_buf *out) {
  char chunk[65536];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
    if (keel_buf_append(out, chunk, n) != KEEL_OK)
      return KEEL_ENOMEM;
  return ferror(f) ? KEEL_EIO : KEEL_OK;
}

/* Reads the file at path ("-" or NULL: stdin) into out; reports errors. */
static bool read_input(const char *ctx, const char *path, keel_buf *out) {
  bool use_stdin = path == NULL || strcmp(path, "-") == 0;
  FILE *f = use_stdin ? stdin : fopen(path, "rb");
  if (f == NULL) {
    keel_cli_error(ctx, "%s: %s", use_stdin ? "stdin" : path, strerror(errno));
    return false;
  }
  int rc = read_all(f, out);
  if (!use_stdin)
    fclose(f);
  if (rc != KEEL_OK) {
    keel_cli_error(ctx, "%s: %s", use_stdin ? "stdin" : path,
                   keel_strerror(rc));
    return false;
  }
  return true;
}

/* Prints t followed by a newline to stdout. Returns false on error. */
static bool print_line(const char *ctx, keel_term t) {
  int rc = keel_fprint(stdout, t, NULL);
  if (rc < 0) {
    keel_cli_error(ctx, "cannot print term: %s", keel_strerror(rc));
    return false;
  }
  putchar('\n');
  return true;
}

/* `keel term decode [--safe] [file]`: prints each term of a sequence of
 * concatenated encodings, one per line. */
static int term_decode(int argc, char **argv) {
  term_args a = {.ctx = "term decode", .allow_safe = true};
  if (!parse_term_args(&a, argc, argv))
    return 2;
  keel_buf in;
  keel_buf_init(&in);
  int status = 1;
  if (!read_input(a.ctx, a.arg, &in))
    goto out;
  if (in.len == 0) {
    keel_cli_error(a.ctx, "no input");
    goto out;
  }
  keel_etf_decode_opts opts = {.safe = a.safe};
  for (size_t off = 0; off < in.len;) {
    keel_heap h;
    keel_heap_init(&h);
    keel_term t;
    size_t used = 0;
    int rc = keel_etf_decode(&h, in.data + off, in.len - off, &used, &t, &opts);
    bool ok = rc == KEEL_OK && print_line(a.ctx, t);
    keel_heap_destroy(&h);
    if (rc != KEEL_OK)
      keel_cli_error(a.ctx, "at byte %zu: %s (%s)", off, keel_strerror(rc),
                     keel_err_name(rc));
    if (!ok)
      goto out;
    off += used;
  }
  status = 0;
out:
  keel_buf_free(&in);
  return status;
}

/* Parses the text argument (or stdin when absent or "-") into *t in h.
 * Trailing text after the term is an error. */
static bool parse_text(const term_args *a, keel_heap *h, keel_term *t) {
  keel_buf in;
  keel_buf_init(&in);
  bool from_stdin = a->arg == NULL || strcmp(a->arg, "-") == 0;
  bool ok = from_stdin ? read_input(a->ctx, NULL, &in)
                       : keel_buf_append(&in, a->arg, strlen(a->arg)) == 0;
  if (!ok) {
    keel_buf_free(&in);
    return false;
  }
  size_t used = 0;
  const char *text = in.data ? (const char *)in.data : "";
  int rc = keel_parse(h, text, in.len, t, &used);
  if (rc == KEEL_OK && used != in.len) {
    keel_cli_error(a->ctx, "unexpected text after the term at byte %zu", used);
    ok = false;
  } else if (rc != KEEL_OK) {
    keel_cli_error(a->ctx, "cannot parse term: %s (%s)", keel_strerror(rc),
                   keel_err_name(rc));
    ok = false;
  }
  keel_buf_free(&in);
  return ok;
}

/* `keel term encode [--compressed[=N]] [--minor-version=1|2] [text]`:
 * writes the ETF encoding of the term to stdout. */
static int term_encode(int argc, char **argv) {
  term_args a = {.ctx = "term encode", .allow_codec = true};
  if (!parse_term_args(&a, argc, argv))
    return 2;
  keel_heap h;
  keel_heap_init(&h);
  keel_buf out;
  keel_buf_init(&out);
  int status = 1;
  keel_term t;
  if (!parse_text(&a, &h, &t))
    goto done;
  keel_etf_encode_opts opts = {.compressed = a.compressed,
                               .minor_version = a.minor};
  int rc = keel_etf_encode(&out, t, &opts);
  if (rc != KEEL_OK) {
    keel_cli_error(a.ctx, "cannot encode: %s (%s)", keel_strerror(rc),
                   keel_err_name(rc));
    goto done;
  }
  if (fwrite(out.data, 1, out.len, stdout) != out.len) {
    keel_cli_error(a.ctx, "stdout: %s", strerror(errno));
    goto done;
  }
  status = 0;
done:
  keel_buf_free(&out);
  keel_heap_destroy(&h);
  return status;
}

/* `keel term print [text]`: parses and prints the term back. */
static int term_print(int argc, char **argv) {
  term_args a = {.ctx = "term print"};
  if (!parse_term_args(&a, argc, argv))
    return 2;
  keel_heap h;
  keel_heap_init(&h);
  keel_term t;
  int status = parse_text(&a, &h, &t) && print_line(a.ctx, t) ? 0 : 1;
  keel_heap_destroy(&h);
  return status;
}

static const keel_cli_cmd term_cmds[] = {
    {"decode", term_decode, "[--safe] [FILE]  ETF (file or stdin) to text"},
    {"encode", term_encode,
     "[--compressed[=N]] [--minor-version=1|2] [TEXT]  text to ETF"},
    {"print", term_print, "[TEXT]  parse text and print it back"},
    {NULL, NULL, NULL}};

int keel_cmd_term(int argc, char **argv) {
  return keel_cli_dispatch(term_cmds, "keel term", argc - 1, argv + 1);
}
