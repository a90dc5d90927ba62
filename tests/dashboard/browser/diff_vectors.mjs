// Checks the browser's applyDiff (src/dashboard/assets/diff.js) against
// vectors written by the C diff (tests/dashboard/test_diff.c): each line is
// "diff<TAB>old<TAB>new" in JSON; applyDiff(old, diff) must equal new.
// Usage: node diff_vectors.mjs <vectors file>
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { deepStrictEqual } from "node:assert";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const { applyDiff } = require(join(here, "../../../src/dashboard/assets/diff.js"));

const lines = readFileSync(process.argv[2], "utf8").split("\n").filter(Boolean);
let n = 0;
for (const line of lines) {
  const [d, a, b] = line.split("\t").map((s) => JSON.parse(s));
  const got = applyDiff(a, d);
  deepStrictEqual(got, b, `vector ${n}: ${line}`);
  if (Object.keys(d).length === 0) deepStrictEqual(a, b);
  n++;
}
if (n === 0) throw new Error("no vectors");
console.log(`applyDiff: ${n} vectors ok`);
