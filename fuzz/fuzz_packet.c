/* libFuzzer target for the gen_tcp packet framing of src/net/packet.c.
 *
 * The first byte chooses the framing (raw, 1, 2, 4, line, the four http
 * types) and how the
 * rest is cut into reads, the second the frame size limit, the third
 * line mode's line_length (0-16) and delimiter ('\n' or ';'). The bytes go
 * through the socket's receive buffer as reads would put them, and every
 * complete frame is taken out. Checks: a frame lies inside the buffer,
 * never exceeds the limit, and its bytes are exactly the input's at the
 * expected place (nothing lost, duplicated or reordered); a line ends
 * with its delimiter and holds no other, unless it is a piece of
 * line_length bytes; a header over the limit stops the stream for good. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keel/error.h"
#include "net/net_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond) {
  if (!cond)
    abort();
}

static const keel_net_packet types[] = {
    KEEL_NET_PACKET_RAW,      KEEL_NET_PACKET_1,     KEEL_NET_PACKET_2,
    KEEL_NET_PACKET_4,        KEEL_NET_PACKET_LINE,  KEEL_NET_PACKET_HTTP,
    KEEL_NET_PACKET_HTTP_BIN, KEEL_NET_PACKET_HTTPH, KEEL_NET_PACKET_HTTPH_BIN,
    KEEL_NET_PACKET_LINE /* line again: keeps the old seeds' meaning */};

/* An http packet: it ends a line, and decodes (the state advancing
 * only as a start line, a header or http_eoh can move it). */
static void check_http(net_sock *s, size_t len) {
  check(len > 0 && s->rx[len - 1] == '\n');
  keel_heap h;
  keel_heap_init(&h);
  uint8_t before = s->http_state;
  if (s->packet >= KEEL_NET_PACKET_HTTPH)
    s->http_state = before = 1;
  keel_term t = keel__http_packet_decode(&h, s->rx, len, &s->http_state,
                                         s->packet % 2 == 1);
  check(t != KEEL_NONE);
  check(s->http_state <= 1);
  if (before == 1 && s->http_state == 0)
    check(t == keel_atom("http_eoh"));
  keel_heap_destroy(&h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 3)
    return 0;
  net_sock s;
  memset(&s, 0, sizeof s);
  s.packet = (uint8_t)types[data[0] % 10];
  size_t step = (size_t)(data[0] / 10) % 23 + 1;
  s.packet_max = data[1] == 0 ? 0xffffffffu : data[1];
  s.line_len = data[2] % 17u;
  s.line_delim = (data[2] & 0x80) ? ';' : '\n';
  bool pieces = s.line_len != 0 && s.line_len < s.packet_max;
  data += 3;
  size -= 3;
  size_t hw = s.packet == KEEL_NET_PACKET_1   ? 1
              : s.packet == KEEL_NET_PACKET_2 ? 2
              : s.packet == KEEL_NET_PACKET_4 ? 4
                                              : 0;
  size_t taken = 0; /* input bytes consumed as frames (headers included) */
  size_t off = 0;
  bool stuck = false;
  while (off < size && !stuck) {
    size_t n = size - off < step ? size - off : step;
    check(keel__net_rx_append(&s, data + off, n) == KEEL_OK);
    off += n;
    for (;;) {
      size_t hdr = 0, len = 0;
      int r = keel__net_frame_next(&s, &hdr, &len);
      if (r == KEEL_ELIMIT) {
        check(s.packet != KEEL_NET_PACKET_RAW);
        /* It stays so however many bytes follow. */
        check(keel__net_frame_next(&s, &hdr, &len) == KEEL_ELIMIT);
        stuck = true;
        break;
      }
      check(r == 0 || r == 1);
      if (r == 0)
        break;
      check(hdr == hw);
      check(hdr + len <= s.rxlen);
      check(s.packet == KEEL_NET_PACKET_RAW || len <= s.packet_max);
      check(memcmp(s.rx, data + taken, hdr + len) == 0);
      if (keel__net_packet_http(&s))
        check_http(&s, len);
      if (s.packet == KEEL_NET_PACKET_LINE) {
        check(len > 0 && memchr(s.rx, s.line_delim, len - 1) == NULL);
        check(s.rx[len - 1] == s.line_delim || (pieces && len == s.line_len));
        check(!pieces || len <= s.line_len);
      }
      keel__net_rx_consume(&s, hdr + len);
      taken += hdr + len;
    }
    check(stuck || taken + s.rxlen == off);
  }
  free(s.rx);
  return 0;
}
