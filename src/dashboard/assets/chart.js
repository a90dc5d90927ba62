/*
 * chart.js - a small SVG line chart: KeelChart.render(svg, points, opts)
 * draws points ([[t_ms, value], ...], oldest first) into an <svg> element
 * with a grid, an area under the line, and min/max labels.
 */
(function (root) {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var H = 120, PAD_L = 44, PAD_R = 8, PAD_T = 10, PAD_B = 18;

  function el(name, attrs, text) {
    var e = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function fmt(v) {
    var a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(1) + "G";
    if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
    if (a >= 100 || v === Math.round(v)) return String(Math.round(v));
    return v.toPrecision(3);
  }

  function render(svg, points, opts) {
    opts = opts || {};
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    /* one user unit per CSS pixel across, so text keeps its size */
    var box = svg.getBoundingClientRect();
    var W = Math.max(200, Math.round(box.width * (H / (box.height || H))) || 320);
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.setAttribute("role", "img");
    if (opts.label) svg.setAttribute("aria-label", opts.label);
    var pw = W - PAD_L - PAD_R, ph = H - PAD_T - PAD_B;
    var vs = points.map(function (p) { return p[1]; });
    var lo = Math.min.apply(null, vs.concat([opts.min !== undefined ? opts.min : Infinity]));
    var hi = Math.max.apply(null, vs.concat([-Infinity]));
    if (!isFinite(lo)) { lo = 0; hi = 1; }
    if (opts.zero !== false && lo > 0) lo = 0;
    if (hi === lo) hi = lo + 1;
    for (var g = 0; g <= 2; g++) {
      var gy = PAD_T + (ph * g) / 2;
      svg.appendChild(el("line", { x1: PAD_L, x2: W - PAD_R, y1: gy, y2: gy, class: "grid" }));
    }
    svg.appendChild(el("text", { x: PAD_L - 4, y: PAD_T + 4, class: "axis", "text-anchor": "end" }, fmt(hi)));
    svg.appendChild(el("text", { x: PAD_L - 4, y: PAD_T + ph, class: "axis", "text-anchor": "end" }, fmt(lo)));
    if (points.length === 0) {
      svg.appendChild(el("text", { x: PAD_L + pw / 2, y: PAD_T + ph / 2, class: "axis", "text-anchor": "middle" }, "no data yet"));
      svg.setAttribute("data-points", "0");
      return;
    }
    var t0 = points[0][0], t1 = points[points.length - 1][0];
    var span = t1 - t0 || 1;
    var xy = points.map(function (p) {
      var x = points.length === 1 ? PAD_L + pw : PAD_L + ((p[0] - t0) / span) * pw;
      var y = PAD_T + ph - ((p[1] - lo) / (hi - lo)) * ph;
      return [x.toFixed(1), y.toFixed(1)];
    });
    var line = "M" + xy.map(function (p) { return p[0] + "," + p[1]; }).join("L");
    var area = line + "L" + xy[xy.length - 1][0] + "," + (PAD_T + ph) + "L" + xy[0][0] + "," + (PAD_T + ph) + "Z";
    svg.appendChild(el("path", { d: area, class: "area" }));
    svg.appendChild(el("path", { d: line, class: "line", "data-testid": "chart-line" }));
    var last = xy[xy.length - 1];
    svg.appendChild(el("circle", { cx: last[0], cy: last[1], r: 2.5, class: "dot" }));
    var secs = Math.round(span / 1000);
    svg.appendChild(el("text", { x: PAD_L, y: H - 4, class: "axis" }, "-" + secs + "s"));
    svg.appendChild(el("text", { x: W - PAD_R, y: H - 4, class: "axis", "text-anchor": "end" }, "now"));
    svg.setAttribute("data-points", String(points.length));
    svg.setAttribute("data-last", String(points[points.length - 1][1]));
  }

  root.KeelChart = { render: render, format: fmt };
})(this);
