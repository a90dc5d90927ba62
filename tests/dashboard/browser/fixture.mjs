// Static frames for the file:// preview check of dashboard.test.mjs only
// (--static): they let the UI render without a server. The product never
// reads them; the server's snapshots are the only data source.
const now = Date.now();
const pts = (n, f) => Array.from({ length: n }, (_, i) => [now - (n - 1 - i) * 500, f(i)]);

export const frames = {
  home: {
    page: "home",
    full: {
      page: "home", node: "demo@127.0.0.1", version: "0.1.0", uptime_ms: 93000,
      schedulers: [
        { id: 1, utilisation: 0.42, run_queue: 1 },
        { id: 2, utilisation: 0.13, run_queue: 0 },
      ],
      run_queue: 0, process_count: 128, process_limit: 4194304, spawned: 400,
      memory: { processes: 2400000, tables: 900000, binaries: 300000, atoms: 120000, messages: 12, total: 48000000 },
      messages_per_s: 5230.5, reductions_per_s: 99000.0, messages_sent: 100000,
      ets_tables: 3, restarts: 7, atoms: 900, atom_limit: 1048576, long_schedules: 0,
    },
  },
  homeDiff: { page: "home", diff: { m: { process_count: { v: 131 }, uptime_ms: { v: 93500 } } } },
  processes: {
    page: "processes",
    full: {
      page: "processes", total: 3, sort: "memory", dir: "desc", limit: 50,
      rows: [
        { id: "<0.10.0>", pid: "<0.10.0>", name: "demo_sup", current_function: "keel_sup_main", memory: 4096, reductions: 120, message_queue_len: 0, status: "waiting", kind: "fiber" },
        { id: "<0.11.0>", pid: "<0.11.0>", name: "", current_function: "worker_main", memory: 2048, reductions: 80, message_queue_len: 2, status: "runnable", kind: "fiber" },
        { id: "<0.12.0>", pid: "<0.12.0>", name: "", current_function: "0x55d0c0", memory: 1024, reductions: 0, message_queue_len: 0, status: "waiting", kind: "handler" },
      ],
      selected: null,
    },
  },
  processesSelect: {
    page: "processes",
    diff: { m: { selected: { v: { id: "<0.11.0>", pid: "<0.11.0>", alive: true, name: "", status: "runnable", kind: "fiber", current_function: "worker_main", memory: 2048, heap_bytes: 1024, reductions: 5000, message_queue_len: 2, links: 1, monitors: 0, monitored_by: 0, link_pids: ["<0.10.0>"], monitor_pids: [], monitored_by_pids: [] } } } },
  },
  supervision: {
    page: "supervision",
    full: {
      page: "supervision",
      roots: [{ id: "demo_sup", label: "demo_sup", pid: "<0.10.0>", type: "supervisor", restarts: 0, error: null,
        children: [
          { id: "w1", label: "w1", pid: "<0.11.0>", type: "worker", restarts: 2, children: [] },
          { id: "pool", label: "pool", pid: "<0.13.0>", type: "supervisor", restarts: 0, error: null,
            children: [{ id: "<0.14.0>", label: "undefined", pid: "<0.14.0>", type: "worker", restarts: 0, children: [] }] },
        ] }],
    },
  },
  tables: {
    page: "tables",
    full: { page: "tables", count: 2, rows: [
      { id: "sessions", name: "sessions", type: "set", size: 120, memory: 40960, owner: "<0.10.0>", protection: "public", keypos: 1 },
      { id: "42", name: "", type: "ordered_set", size: 3, memory: 1024, owner: "", protection: "protected", keypos: 1 },
    ] },
  },
  metrics: {
    page: "metrics",
    full: { page: "metrics", interval_ms: 500, history: 120, series: [
      { id: "keel.vm.process_count", name: "keel.vm.process_count", tags: "", kind: "last_value", points: pts(40, (i) => 100 + (i % 7)) },
      { id: "demo.jobs.count{}", name: "demo.jobs.count", tags: "", kind: "counter", points: pts(40, (i) => i * 10) },
    ] },
  },
  metricsDiff: { page: "metrics", diff: { m: { series: { k: { u: [["keel.vm.process_count", { m: { points: { s: 1, p: [[now + 500, 180]] } } }]] } } } } },
  presence: {
    page: "presence",
    full: { page: "presence", count: 2, users: [{ id: "tab-1", page: "home" }, { id: "tab-2", page: "metrics" }] },
  },
};
