"""Parses a Prometheus text exposition (stdin) with prometheus_client and
prints what it understood, one line per family and per sample, tab-separated:
  F <name> <type> <help>
  S <sample name> <labels as k=json(v) sorted, comma-separated> <value>
Exits 1 if the parser rejects the text."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

text = sys.stdin.read()
try:
    families = list(text_string_to_metric_families(text))
except Exception as e:  # the parser raises ValueError and others
    print("parse error: %r" % (e,), file=sys.stderr)
    sys.exit(1)
for fam in families:
    print("F\t%s\t%s\t%s" % (fam.name, fam.type, json.dumps(fam.documentation)))
    for s in fam.samples:
        labels = ",".join("%s=%s" % (k, json.dumps(v))
                          for k, v in sorted(s.labels.items()))
        print("S\t%s\t%s\t%r" % (s.name, labels, float(s.value)))
