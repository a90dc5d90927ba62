/*
 * diff.js - applies a dashboard diff (docs/dashboard.md) to the page state.
 * Mirrors keel_dashboard_diff_apply in src/dashboard/diff.c: the result is
 * exactly the server's new snapshot. Node shapes:
 *   {}                      unchanged
 *   {v: New}                replace
 *   {m: {k: Node}, r: [k]}  map patch (changed/added keys, removed keys)
 *   {k: {d, u, a, o}}       keyed rows: deleted ids, [id, Node] updates,
 *                           added rows, and the new id order when needed
 *   {s: N, p: [items]}      list: drop N from the head, append items
 */
(function (root) {
  "use strict";

  function has(o, k) {
    return Object.prototype.hasOwnProperty.call(o, k);
  }

  function key(id) {
    return typeof id === "string" ? "s" + id : "j" + JSON.stringify(id);
  }

  function isObj(x) {
    return x !== null && typeof x === "object" && !Array.isArray(x);
  }

  function bad(msg) {
    throw new Error("bad diff: " + msg);
  }

  function applyMap(old, node) {
    if (!isObj(old)) bad("map patch on a non-map");
    var out = {};
    var removed = {};
    (node.r || []).forEach(function (k) { removed[String(k)] = true; });
    Object.keys(old).forEach(function (k) {
      if (!removed[k]) out[k] = old[k];
    });
    var m = node.m || {};
    Object.keys(m).forEach(function (k) {
      out[k] = applyNode(has(old, k) ? old[k] : undefined, m[k]);
    });
    return out;
  }

  function applyKeyed(old, k) {
    if (!Array.isArray(old) || !isObj(k)) bad("keyed patch on a non-list");
    var rows = old.slice();
    var index = {};
    rows.forEach(function (row, i) {
      if (!isObj(row) || !has(row, "id")) bad("row without id");
      index[key(row.id)] = i;
    });
    (k.u || []).forEach(function (pair) {
      var i = index[key(pair[0])];
      if (i === undefined) bad("update of a missing row");
      rows[i] = applyNode(rows[i], pair[1]);
    });
    (k.d || []).forEach(function (id) {
      var i = index[key(id)];
      if (i === undefined) bad("delete of a missing row");
      rows[i] = undefined;
    });
    rows = rows.filter(function (r) { return r !== undefined; });
    (k.a || []).forEach(function (row) { rows.push(row); });
    if (k.o) {
      var byId = {};
      rows.forEach(function (row) { byId[key(row.id)] = row; });
      var ordered = k.o.map(function (id) {
        var row = byId[key(id)];
        if (row === undefined) bad("order names a missing row");
        return row;
      });
      if (ordered.length !== rows.length) bad("order length");
      rows = ordered;
    }
    return rows;
  }

  function applyShift(old, node) {
    if (!Array.isArray(old) || node.s > old.length) bad("shift");
    return old.slice(node.s).concat(node.p || []);
  }

  function applyNode(old, node) {
    if (!isObj(node)) bad("node is not an object");
    if (Object.keys(node).length === 0) return old;
    if (has(node, "v")) return node.v;
    if (old === undefined) bad("only a replacement may add a key");
    if (has(node, "k")) return applyKeyed(old, node.k);
    if (has(node, "s")) return applyShift(old, node);
    if (has(node, "m") || has(node, "r")) return applyMap(old, node);
    bad("unknown node");
  }

  var api = { applyDiff: applyNode };
  if (typeof module !== "undefined" && module.exports) module.exports = api;
  else root.KeelDiff = api;
})(this);
