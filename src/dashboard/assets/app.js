/*
 * app.js - the dashboard UI: one WebSocket to /live per page (protocol in
 * docs/dashboard.md); the server sends {"full": snapshot} on join, then
 * {"diff": ...} when the page changed; KeelDiff.applyDiff rebuilds the
 * snapshot and the page is rendered from it. Frames of a shared page carry
 * their version "v": a diff applies to the version before it (an older
 * one is a duplicate and is dropped; a newer one means a frame was lost:
 * join again). Reconnects on loss.
 */
(function () {
  "use strict";
  var PAGES = ["home", "processes", "supervision", "tables", "metrics", "presence"];
  var page = "home";
  var state = null;
  var version = null; /* "v" of the frame state is at, when it had one */
  var params = { processes: { sort: "memory", dir: "desc", limit: 50 } };
  var ws = null;
  var backoff = 500;
  var lastFrameAt = 0;
  var history = { procs: [], msgs: [] };
  var $page = document.getElementById("page");
  var $modal = document.querySelector("[data-testid=process-modal]");
  var $detail = document.querySelector("[data-testid=process-detail]");
  var $conn = document.querySelector("[data-testid=conn-status]");
  var $banner = document.querySelector("[data-testid=banner]");
  var $toast = document.querySelector("[data-testid=toast]");

  /* ---- formatting -------------------------------------------------------- */

  function esc(s) {
    return String(s === undefined || s === null ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function num(n) {
    return typeof n === "number" ? n.toLocaleString("en-US", { maximumFractionDigits: 1 }) : esc(n);
  }
  function bytes(n) {
    if (typeof n !== "number") return "";
    var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + u[i];
  }
  function duration(ms) {
    var s = Math.floor(ms / 1000), d = Math.floor(s / 86400);
    var h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    return (d ? d + "d " : "") + (d || h ? h + "h " : "") + (d || h || m ? m + "m " : "") + (s % 60) + "s";
  }
  function pct(x) { return (100 * (x || 0)).toFixed(0) + "%"; }

  /* ---- connection -------------------------------------------------------- */

  function setConn(s, text) {
    $conn.setAttribute("data-state", s);
    $conn.querySelector(".conn-text").textContent = text || s;
  }

  function send(obj) {
    if (ws && ws.readyState === 1) ws.send(JSON.stringify(obj));
  }

  function joinMsg() {
    var msg = { join: page };
    if (params[page]) msg.params = params[page];
    return msg;
  }

  function join() {
    state = null;
    version = null;
    render();
    send(joinMsg());
  }

  function connect() {
    if (location.protocol === "file:") return; /* static preview */
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/live";
    setConn("connecting");
    ws = new WebSocket(url);
    ws.onopen = function () {
      backoff = 500;
      setConn("live");
      hideBanner();
      send(joinMsg());
    };
    ws.onmessage = function (ev) {
      var frame;
      try { frame = JSON.parse(ev.data); } catch (e) { return; }
      receive(frame);
    };
    ws.onclose = function () {
      ws = null;
      setConn("offline", "reconnecting");
      showBanner("Connection lost; reconnecting\u2026");
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 5000);
    };
    ws.onerror = function () { if (ws) ws.close(); };
  }

  function receive(frame) {
    if (frame.page !== undefined && frame.page !== page) return; /* an old page's frame */
    if (frame.rejoin) { send(joinMsg()); return; } /* its renderer ended */
    if (frame.error !== undefined) showBanner("Server: " + frame.error);
    if (frame.full !== undefined) {
      state = frame.full;
      version = frame.v !== undefined ? frame.v : null;
      hideBannerIfLive();
    }
    if (frame.diff !== undefined) {
      if (state === null) return;
      if (frame.v !== undefined && version !== null) {
        if (frame.v <= version) return; /* already in the snapshot */
        if (frame.v !== version + 1) { send(joinMsg()); return; }
      }
      version = frame.v !== undefined ? frame.v : null;
      try {
        state = KeelDiff.applyDiff(state, frame.diff);
      } catch (e) {
        send(joinMsg()); /* out of step: ask for the page again */
        return;
      }
    }
    if (frame.reply && frame.reply.error) toast(frame.reply.error);
    lastFrameAt = Date.now();
    if (state && page === "home") remember(state);
    if (frame.full !== undefined || frame.diff !== undefined) render();
  }

  function hideBannerIfLive() { if (!ws || ws.readyState === 1) hideBanner(); }
  function showBanner(text) { $banner.textContent = text; $banner.hidden = false; }
  function hideBanner() { $banner.hidden = true; }
  var toastTimer = null;
  function toast(text) {
    $toast.textContent = text;
    $toast.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { $toast.hidden = true; }, 3000);
  }

  /* ---- pages ------------------------------------------------------------- */

  function remember(s) {
    var t = Date.now();
    history.procs.push([t, s.process_count]);
    history.msgs.push([t, s.messages_per_s]);
    if (history.procs.length > 120) { history.procs.shift(); history.msgs.shift(); }
  }

  function card(label, value, testid, sub) {
    return '<div class="card"><div class="label">' + esc(label) + '</div><div class="value" data-testid="' +
      testid + '">' + value + "</div>" + (sub ? '<div class="sub">' + sub + "</div>" : "") + "</div>";
  }

  function renderHome(s) {
    var mem = s.memory || {};
    var total = mem.total || 1;
    var parts = [["processes", mem.processes], ["tables", mem.tables], ["binaries", mem.binaries], ["atoms", mem.atoms]];
    var other = Math.max(0, total - parts.reduce(function (a, p) { return a + (p[1] || 0); }, 0));
    parts.push(["other", other]);
    var bar = parts.map(function (p, i) {
      return '<span class="c' + i + '" style="width:' + (100 * (p[1] || 0) / total).toFixed(2) + '%"></span>';
    }).join("");
    var legend = parts.map(function (p, i) {
      return '<span data-testid="memory-' + esc(p[0]) + '"><i class="c' + i + '"></i>' + esc(p[0]) + " " + bytes(p[1] || 0) + "</span>";
    }).join("") + '<span class="muted" data-testid="memory-messages">' + num(mem.messages || 0) + " messages live</span>";
    var scheds = (s.schedulers || []).map(function (r) {
      return '<tr data-testid="scheduler-row"><td>' + r.id + '</td><td><div class="bar"><span style="width:' +
        pct(r.utilisation) + '"></span></div></td><td class="num">' + pct(r.utilisation) +
        '</td><td class="num">' + r.run_queue + "</td></tr>";
    }).join("");
    $page.innerHTML =
      "<h1>" + esc(s.node) + ' <span class="muted">Keel ' + esc(s.version) + "</span></h1>" +
      '<div class="cards">' +
      card("Uptime", duration(s.uptime_ms), "uptime") +
      card("Processes", num(s.process_count), "process-count", "limit " + num(s.process_limit)) +
      card("Messages / s", num(s.messages_per_s), "messages-per-s", num(s.messages_sent) + " sent") +
      card("Reductions / s", num(s.reductions_per_s), "reductions-per-s") +
      card("Run queue", num(s.run_queue + (s.schedulers || []).reduce(function (a, r) { return a + r.run_queue; }, 0)), "run-queue") +
      card("ETS tables", num(s.ets_tables), "ets-tables") +
      card("Restarts", num(s.restarts), "restarts") +
      card("Atoms", num(s.atoms), "atoms", "limit " + num(s.atom_limit)) +
      "</div>" +
      '<div class="grid2"><div class="panel chart-card"><h2>Processes</h2><svg class="chart" data-testid="home-chart-processes"></svg></div>' +
      '<div class="panel chart-card"><h2>Messages / s</h2><svg class="chart" data-testid="home-chart-messages"></svg></div></div>' +
      '<div class="grid2"><div class="panel"><h2>Memory</h2><div class="muted">total ' + bytes(mem.total) +
      '</div><div class="membar" data-testid="memory-bar">' + bar + '</div><div class="legend">' + legend + "</div></div>" +
      '<div class="panel"><h2>Schedulers</h2><table><thead><tr><th>#</th><th>Utilisation</th><th class="num"></th><th class="num">Run queue</th></tr></thead><tbody>' +
      scheds + "</tbody></table></div></div>";
    KeelChart.render($page.querySelector("[data-testid=home-chart-processes]"), history.procs, { label: "processes" });
    KeelChart.render($page.querySelector("[data-testid=home-chart-messages]"), history.msgs, { label: "messages per second" });
  }

  var PROC_COLS = [
    ["pid", "PID", false], ["name", "Name", false], ["current_function", "Current function", null],
    ["memory", "Memory", true], ["reductions", "Reductions", true], ["message_queue_len", "Queue", true]
  ];

  function renderProcesses(s) {
    params.processes = { sort: s.sort, dir: s.dir, limit: s.limit };
    if (s.selected && s.selected !== null && s.selected.id) params.processes.pid = s.selected.id;
    var head = PROC_COLS.map(function (c) {
      var cls = (c[2] ? "num " : "") + (c[2] !== null ? "sortable" : "");
      var arrow = s.sort === c[0] ? ' <span class="arrow">' + (s.dir === "asc" ? "\u25B2" : "\u25BC") + "</span>" : "";
      return '<th class="' + cls + '"' + (c[2] !== null ? ' data-sort="' + c[0] + '" data-testid="sort-' + c[0] + '"' : "") +
        ">" + esc(c[1]) + arrow + "</th>";
    }).join("");
    var rows = (s.rows || []).map(function (r) {
      return '<tr class="clickable" data-testid="process-row" data-pid="' + esc(r.pid) + '">' +
        '<td class="mono">' + esc(r.pid) + "</td><td>" + (r.name ? esc(r.name) : '<span class="muted">\u2014</span>') +
        '</td><td class="mono">' + esc(r.current_function) + '</td><td class="num">' + bytes(r.memory) +
        '</td><td class="num">' + num(r.reductions) + '</td><td class="num">' + num(r.message_queue_len) + "</td></tr>";
    }).join("");
    var limits = [20, 50, 100, 500].map(function (n) {
      return "<option" + (n === s.limit ? " selected" : "") + ">" + n + "</option>";
    }).join("");
    $page.innerHTML = '<div class="toolbar"><h1 style="margin:0">Processes</h1><span class="muted" data-testid="process-total">' +
      num(s.total) + " processes</span><span class=\"spacer\"></span><label>Show <select data-testid=\"process-limit\">" +
      limits + "</select></label></div>" +
      '<div class="table-wrap"><table data-testid="process-table"><thead><tr>' + head + "</tr></thead><tbody>" +
      rows + "</tbody></table></div>" +
      '<p class="muted">Reductions are counted over the last refresh interval. Click a row for details.</p>';
    renderModal(s.selected);
  }

  /* A relation count and its pids, each a link to that process's detail. */
  function pids(count, list) {
    var items = (list || []).map(function (p) {
      return '<a href="#" class="mono pid-link" data-select="' + esc(p) + '">' + esc(p) + "</a>";
    });
    var more = count > items.length ? ' <span class="muted">and ' + num(count - items.length) + " more</span>" : "";
    return num(count) + (items.length ? ': ' + items.join(", ") + more : "");
  }

  function renderModal(sel) {
    if (!sel || sel === null || page !== "processes") { $modal.hidden = true; return; }
    $modal.hidden = false;
    $modal.setAttribute("data-pid", sel.id);
    var kill = $modal.querySelector("[data-testid=kill-button]");
    if (!sel.alive) {
      kill.disabled = true;
      $detail.innerHTML = '<p data-testid="process-exited">Process <span class="mono">' + esc(sel.id) + "</span> has exited.</p>";
      return;
    }
    kill.disabled = false;
    var kv = [["PID", '<span class="mono">' + esc(sel.pid) + "</span>"], ["Name", esc(sel.name) || "\u2014"],
      ["Status", '<span class="pill">' + esc(sel.status) + "</span>"], ["Kind", esc(sel.kind)],
      ["Current function", '<span class="mono">' + esc(sel.current_function) + "</span>"],
      ["Memory", bytes(sel.memory)], ["Heap", bytes(sel.heap_bytes)], ["Reductions", num(sel.reductions)],
      ["Message queue", num(sel.message_queue_len)], ["Links", pids(sel.links, sel.link_pids)],
      ["Monitors", pids(sel.monitors, sel.monitor_pids)], ["Monitored by", pids(sel.monitored_by, sel.monitored_by_pids)]];
    $detail.innerHTML = '<dl class="kv">' + kv.map(function (p) {
      return "<dt>" + p[0] + '</dt><dd data-testid="detail-' + p[0].toLowerCase().replace(/ /g, "-") + '">' + p[1] + "</dd>";
    }).join("") + "</dl>";
  }

  function treeNode(n) {
    var sup = n.type === "supervisor";
    var kids = (n.children || []).map(treeNode).join("");
    return '<li><span class="node-box ' + esc(n.type) + '" data-testid="sup-node" data-type="' + esc(n.type) +
      '" data-label="' + esc(n.label) + '"><strong>' + (n.label === "undefined" ? '<span class="muted">dynamic</span>' : esc(n.label)) + '</strong><span class="mono muted">' +
      esc(n.pid) + '</span><span class="pill ' + (sup ? "sup" : "") + '">' + esc(n.type) + "</span>" +
      (n.restarts ? '<span class="pill warn" data-testid="restarts">' + n.restarts + " restarts</span>" : "") +
      (n.error && n.error !== null ? '<span class="pill warn">' + esc(n.error) + "</span>" : "") +
      "</span>" + (kids ? "<ul>" + kids + "</ul>" : "") + "</li>";
  }

  function renderSupervision(s) {
    var roots = s.roots || [];
    $page.innerHTML = "<h1>Supervision tree</h1>" + (roots.length
      ? '<div class="panel"><ul class="tree" data-testid="sup-tree">' + roots.map(treeNode).join("") + "</ul></div>"
      : '<div class="empty panel">No supervision roots configured.</div>');
  }

  function renderTables(s) {
    var rows = (s.rows || []).slice().sort(function (a, b) { return b.memory - a.memory; }).map(function (r) {
      return '<tr data-testid="table-row"><td>' + (r.name ? esc(r.name) : '<span class="mono muted">' + esc(r.id) + "</span>") +
        "</td><td>" + esc(r.type) + '</td><td class="num">' + num(r.size) + '</td><td class="num">' + bytes(r.memory) +
        '</td><td class="mono">' + esc(r.owner) + "</td><td>" + esc(r.protection) + "</td></tr>";
    }).join("");
    $page.innerHTML = '<div class="toolbar"><h1 style="margin:0">ETS tables</h1><span class="muted" data-testid="table-count">' +
      num(s.count) + " tables</span></div>" +
      (rows ? '<div class="table-wrap"><table><thead><tr><th>Name</th><th>Type</th><th class="num">Size</th>' +
        '<th class="num">Memory</th><th>Owner</th><th>Protection</th></tr></thead><tbody>' + rows + "</tbody></table></div>"
        : '<div class="empty panel">No tables.</div>');
  }

  function ratePoints(points) {
    var out = [];
    for (var i = 1; i < points.length; i++) {
      var dt = (points[i][0] - points[i - 1][0]) / 1000;
      if (dt > 0) out.push([points[i][0], Math.max(0, (points[i][1] - points[i - 1][1]) / dt)]);
    }
    return out;
  }

  function renderMetrics(s) {
    var series = s.series || [];
    if (!series.length) { $page.innerHTML = '<h1>Metrics</h1><div class="empty panel">No metrics.</div>'; return; }
    $page.innerHTML = '<h1>Metrics</h1><div class="charts">' + series.map(function (m, i) {
      var asRate = m.kind === "counter" || m.kind === "sum";
      var last = m.points.length ? m.points[m.points.length - 1][1] : null;
      return '<div class="panel chart-card" data-testid="metric-card" data-series="' + esc(m.id) + '"><div class="head">' +
        '<span class="name" title="' + esc(m.name) + '">' + esc(m.name) + '</span><span class="last">' +
        (last === null ? "" : KeelChart.format(last)) + "</span></div>" + '<div class="tags">' + esc(m.tags) +
        (asRate ? ' <span class="muted">(per second)</span>' : "") + "</div>" +
        '<svg class="chart" data-testid="chart" data-index="' + i + '"></svg></div>';
    }).join("") + "</div>";
    series.forEach(function (m, i) {
      var svg = $page.querySelector('svg[data-index="' + i + '"]');
      var asRate = m.kind === "counter" || m.kind === "sum";
      KeelChart.render(svg, asRate ? ratePoints(m.points) : m.points, { label: m.name });
    });
  }

  function renderPresence(s) {
    var users = s.users || [];
    var rows = users.map(function (u) {
      var rest = Object.keys(u).filter(function (k) { return k !== "id"; }).map(function (k) {
        return '<span class="pill">' + esc(k) + ": " + esc(typeof u[k] === "object" ? JSON.stringify(u[k]) : u[k]) + "</span>";
      }).join(" ");
      return '<tr data-testid="presence-row"><td class="mono">' + esc(u.id) + "</td><td>" + rest + "</td></tr>";
    }).join("");
    $page.innerHTML = '<div class="toolbar"><h1 style="margin:0">Presence</h1><span class="muted"><span data-testid="presence-count">' +
      num(s.count) + "</span> watching</span></div>" +
      (rows ? '<div class="table-wrap"><table><thead><tr><th>Who</th><th>Details</th></tr></thead><tbody>' + rows +
        "</tbody></table></div>" : '<div class="empty panel">Nobody is watching.</div>');
  }

  var RENDER = {
    home: renderHome, processes: renderProcesses, supervision: renderSupervision,
    tables: renderTables, metrics: renderMetrics, presence: renderPresence
  };

  function render() {
    document.querySelectorAll(".nav a").forEach(function (a) {
      a.classList.toggle("active", a.getAttribute("data-page") === page);
    });
    document.body.setAttribute("data-page", page);
    if (state === null) {
      $page.innerHTML = '<div class="empty">Loading\u2026</div>';
      $modal.hidden = true;
      return;
    }
    if (state.node) document.querySelector("[data-testid=node-name]").textContent = state.node;
    if (page !== "processes") $modal.hidden = true;
    RENDER[page](state);
  }

  /* ---- events ------------------------------------------------------------ */

  $page.addEventListener("click", function (ev) {
    var th = ev.target.closest("th[data-sort]");
    if (th && state) {
      var by = th.getAttribute("data-sort");
      var dir = state.sort === by ? (state.dir === "asc" ? "desc" : "asc") : (by === "pid" || by === "name" ? "asc" : "desc");
      send({ event: "sort", by: by, dir: dir });
      return;
    }
    var tr = ev.target.closest("tr[data-pid]");
    if (tr) send({ event: "select", pid: tr.getAttribute("data-pid") });
  });
  $page.addEventListener("change", function (ev) {
    if (ev.target.matches("[data-testid=process-limit]")) send({ event: "limit", limit: Number(ev.target.value) });
  });
  $modal.addEventListener("click", function (ev) {
    var link = ev.target.closest("[data-select]");
    if (link) {
      ev.preventDefault();
      send({ event: "select", pid: link.getAttribute("data-select") });
      return;
    }
    var act = ev.target.closest("[data-action]");
    if (ev.target === $modal || (act && act.getAttribute("data-action") === "close")) {
      delete params.processes.pid;
      $modal.hidden = true;
      send({ event: "select", pid: null });
    } else if (act && act.getAttribute("data-action") === "kill") {
      var pid = $modal.getAttribute("data-pid");
      if (pid) send({ event: "kill", pid: pid });
    }
  });
  document.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape" && !$modal.hidden) $modal.querySelector("[data-action=close]").click();
  });

  function route() {
    var m = location.hash.match(/^#\/(\w+)/);
    var next = m && PAGES.indexOf(m[1]) >= 0 ? m[1] : "home";
    if (next === page && state !== null) return;
    page = next;
    join();
  }
  window.addEventListener("hashchange", route);

  /* A stalled socket (no frame for a long time while joined) is replaced. */
  setInterval(function () {
    if (ws && ws.readyState === 1 && lastFrameAt && Date.now() - lastFrameAt > 30000) {
      send({ ping: Date.now() });
    }
  }, 10000);

  /* Hooks for tests and the console. */
  window.KeelDash = {
    receive: receive,
    state: function () { return state; },
    page: function () { return page; }
  };

  var m0 = location.hash.match(/^#\/(\w+)/);
  page = m0 && PAGES.indexOf(m0[1]) >= 0 ? m0[1] : "home";
  render();
  connect();
})();
