// Browser test of the Keel dashboard, with playwright-core driving Debian's
// chromium (/usr/bin/chromium, or $CHROMIUM).
//
//   node dashboard.test.mjs --url http://127.0.0.1:4000   end to end against
//        a running node (`make run`): live updates, the process count, a
//        chart that changes, every page, a kill from the UI followed by the
//        supervisor's restart.
//   node dashboard.test.mjs --bridge <build>/example_dashboard_stdio   the
//        same end-to-end checks without a network: the page's HTTP requests
//        and its /live WebSocket are routed (Playwright route and
//        routeWebSocket) to the real C sessions of examples/dashboard_stdio.c
//        over its stdin/stdout.
//   node dashboard.test.mjs --static   loads src/dashboard/assets/index.html
//        from file:// and feeds it static frames (fixture.mjs) through the
//        page's test hook, to check the UI renders without a server.
//
// Screenshots go to $ARTIFACTS (default ./artifacts). Exits non-zero on the
// first failed check.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const staticMode = args.includes("--static");
const bridgeBin = args.includes("--bridge") ? args[args.indexOf("--bridge") + 1] : null;
const urlArg = args.includes("--url") ? args[args.indexOf("--url") + 1] : "http://127.0.0.1:4000";
const artifacts = resolve(process.env.ARTIFACTS || join(here, "artifacts"));
const TIMEOUT = 15000;
mkdirSync(artifacts, { recursive: true });

function check(cond, msg) {
  if (!cond) throw new Error("check failed: " + msg);
  console.log("ok - " + msg);
}

async function shot(page, name) {
  await page.screenshot({ path: join(artifacts, name + ".png"), fullPage: true });
}

const PAGES = {
  home: "[data-testid=process-count]",
  processes: "[data-testid=process-row]",
  supervision: "[data-testid=sup-node]",
  tables: "[data-testid=table-count]",
  metrics: "svg[data-testid=chart]",
  presence: "[data-testid=presence-count]",
};

async function intText(page, sel) {
  const t = await page.locator(sel).first().innerText();
  return Number(t.replace(/[^0-9.-]/g, ""));
}

async function gotoPage(page, name) {
  await page.click(`[data-testid=nav-${name}]`);
  await page.waitForFunction((n) => document.body.getAttribute("data-page") === n, name, { timeout: TIMEOUT });
  await page.locator(PAGES[name]).first().waitFor({ timeout: TIMEOUT });
  check(await page.locator(`[data-testid=nav-${name}]`).evaluate((a) => a.classList.contains("active")),
    `nav ${name} is active`);
}

async function runStatic(page) {
  const { frames } = await import("./fixture.mjs");
  const feed = (f) => page.evaluate((fr) => window.KeelDash.receive(fr), f);
  await page.goto(pathToFileURL(join(here, "../../../src/dashboard/assets/index.html")).href);
  await feed(frames.home);
  check(await intText(page, "[data-testid=process-count]") === 128, "home shows the process count");
  await feed(frames.homeDiff);
  check(await intText(page, "[data-testid=process-count]") === 131, "a diff updates the process count");
  check(await page.locator("[data-testid=scheduler-row]").count() === 2, "one row per scheduler");
  check((await page.locator("[data-testid=memory-binaries]").innerText()).includes("binaries"),
    "memory shows binaries");
  check((await page.locator("[data-testid=memory-messages]").innerText()).startsWith("12"),
    "messages in flight are a count");
  await shot(page, "static-home");
  for (const name of ["processes", "supervision", "tables", "metrics", "presence"]) {
    await page.click(`[data-testid=nav-${name}]`);
    await page.waitForFunction((n) => document.body.getAttribute("data-page") === n, name);
    await feed(frames[name]);
    await page.locator(PAGES[name]).first().waitFor({ timeout: TIMEOUT });
    check(true, `${name} renders`);
    if (name === "processes") {
      check(await page.locator("[data-testid=process-row]").count() === 3, "three process rows");
      await feed(frames.processesSelect);
      await page.locator("[data-testid=kill-button]").waitFor({ state: "visible" });
      check(await page.locator("[data-testid=detail-links]").innerText() === "1: <0.10.0>", "detail lists links");
      check(await page.locator("[data-testid=detail-links] [data-select]").getAttribute("data-select") === "<0.10.0>",
        "a linked pid opens its own detail");
      await shot(page, "static-process-detail");
      await page.click("[data-testid=modal-close]");
    }
    if (name === "supervision")
      check(await page.locator("[data-testid=sup-node]").count() === 4, "four tree nodes");
    if (name === "metrics") {
      const d0 = await page.locator("svg[data-testid=chart] path.line").first().getAttribute("d");
      await feed(frames.metricsDiff);
      const d1 = await page.locator("svg[data-testid=chart] path.line").first().getAttribute("d");
      check(d0 && d1 && d0 !== d1, "a metrics diff changes the chart");
    }
    await shot(page, "static-" + name);
  }
  await page.setViewportSize({ width: 390, height: 844 });
  await page.click("[data-testid=nav-home]");
  await feed(frames.home);
  await shot(page, "static-home-mobile");
}

async function runLive(page) {
  await page.goto(urlArg + "/#/home");
  await page.waitForSelector("[data-testid=conn-status][data-state=live]", { timeout: TIMEOUT });
  check(true, "the WebSocket is live");
  await page.locator(PAGES.home).waitFor({ timeout: TIMEOUT });
  // live updates: uptime changes without a reload
  const up0 = await page.locator("[data-testid=uptime]").innerText();
  await page.waitForFunction((u) => document.querySelector("[data-testid=uptime]")?.innerText !== u, up0,
    { timeout: TIMEOUT });
  check(true, "home updates live");
  const shown = await intText(page, "[data-testid=process-count]");
  const api = await page.evaluate(async () => (await fetch("/api/home")).json());
  check(shown > 0 && Math.abs(shown - api.process_count) <= 5 + api.process_count / 10,
    `process count ${shown} matches /api/home (${api.process_count})`);
  await shot(page, "home");

  await gotoPage(page, "metrics");
  const line = page.locator("svg[data-testid=chart] path.line").first();
  await line.waitFor({ state: "attached", timeout: TIMEOUT });
  const d0 = await line.getAttribute("d");
  await page.waitForFunction((d) => {
    const p = document.querySelector("svg[data-testid=chart] path.line");
    return p && p.getAttribute("d") !== d;
  }, d0, { timeout: TIMEOUT });
  check(true, "a metrics chart changes");
  await shot(page, "metrics");

  for (const name of ["processes", "supervision", "tables", "presence", "home"]) {
    await gotoPage(page, name);
    await shot(page, name);
  }

  // Kill a supervised worker from the processes page; see it restarted. A
  // worker may also exit by itself meanwhile: then pick one again.
  let label, pid;
  for (let attempt = 1; ; attempt++) {
    await gotoPage(page, "supervision");
    const worker = page.locator("[data-testid=sup-node][data-type=worker]").first();
    label = await worker.getAttribute("data-label");
    pid = (await worker.locator(".mono").innerText()).trim();
    check(/^<\d+\.\d+\.\d+>$/.test(pid), `worker ${label} runs as ${pid}`);
    await gotoPage(page, "processes");
    if ((await page.locator("[data-testid=process-limit]").inputValue()) !== "500")
      await page.selectOption("[data-testid=process-limit]", "500");
    const row = page.locator(`[data-testid=process-row][data-pid="${pid}"]`);
    try {
      await row.waitFor({ timeout: TIMEOUT });
      await row.click();
      await page.locator("[data-testid=kill-button]").waitFor({ state: "visible", timeout: TIMEOUT });
      if (await page.locator("[data-testid=kill-button]").isEnabled()) break;
      await page.click("[data-testid=modal-close]");
    } catch (e) {
      if (attempt === 3) throw e;
    }
    if (attempt === 3) throw new Error(`could not open a live worker's detail`);
  }
  await shot(page, "process-detail");
  await page.click("[data-testid=kill-button]");
  await page.locator("[data-testid=process-exited]").waitFor({ timeout: TIMEOUT });
  check(true, `${pid} was killed`);
  await page.click("[data-testid=modal-close]");
  await gotoPage(page, "supervision");
  await page.waitForFunction(([l, p]) => {
    const n = [...document.querySelectorAll("[data-testid=sup-node]")].find((e) => e.getAttribute("data-label") === l);
    const now = n && n.querySelector(".mono").innerText.trim();
    return now && now !== p && /^<\d+\.\d+\.\d+>$/.test(now);
  }, [label, pid], { timeout: TIMEOUT });
  check(true, `${label} was restarted under a new pid`);
  await shot(page, "supervision-after-kill");
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
// Routes the page's HTTP requests and /live sockets to the stdio example.
async function bridge(page, bin) {
  const child = spawn(bin, [], { stdio: ["pipe", "pipe", "inherit"] });
  const waiting = new Map();
  const sockets = new Map();
  let next = 1;
  createInterface({ input: child.stdout }).on("line", (l) => {
    const m = JSON.parse(l);
    if (m.frame !== undefined) sockets.get(m.id)?.send(JSON.stringify(m.frame));
    else waiting.get(m.id)?.(m);
  });
  await page.route(urlArg + "/**", async (route) => {
    const id = next++;
    const u = new URL(route.request().url());
    const res = await new Promise((ok) => {
      waiting.set(id, ok);
      child.stdin.write(`get ${id} ${u.pathname}${u.search}\n`);
    });
    waiting.delete(id);
    await route.fulfill({ status: res.status, contentType: res.type, body: res.body });
  });
  await page.routeWebSocket(/\/live$/, (ws) => {
    const id = next++;
    sockets.set(id, ws);
    child.stdin.write(`open ${id}\n`);
    ws.onMessage((msg) => child.stdin.write(`msg ${id} ${String(msg).replace(/\n/g, " ")}\n`));
    ws.onClose(() => { sockets.delete(id); child.stdin.write(`close ${id}\n`); });
  });
  return child;
}

let failed = false;
let child = null;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  if (bridgeBin) child = await bridge(page, resolve(bridgeBin));
  page.on("pageerror", (e) => { failed = true; console.error("page error: " + e.message); });
  await (staticMode ? runStatic(page) : runLive(page));
  if (failed) throw new Error("the page raised errors");
  console.log("all checks passed; screenshots in " + artifacts);
} catch (e) {
  console.error(e);
  process.exitCode = 1;
} finally {
  await browser.close();
  if (child) child.stdin.end();
}
