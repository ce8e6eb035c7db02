// Browser test of the Updraft UI, in Debian's headless Chromium driven by playwright-core.
// Needs a running `updraft standalone` whose DAGs folder holds DAG_ID (paused, one shell task
// that echoes params.message). Environment:
//   BASE_URL (http://127.0.0.1:8080), UPDRAFT_USER (admin), UPDRAFT_PASSWORD, DAG_ID (browser_demo),
//   ARTIFACTS (../../artifacts/browser), CHROMIUM (/usr/bin/chromium)
// Steps: log in, unpause the DAG with its toggle, trigger it with a conf, watch the run page
// fill in and turn green live, open the task log and see the output, open a task in the grid's
// side panel, watch a run triggered through the API appear in the grid, see the graph of a
// 100-wide fan-out fit the screen and zoom it, add a connection
// (CONN_ID, CONN_PASSWORD) in Admin → Connections with its Test button. Screenshots:
// dag-list.png, run-live.png, run.png, grid-panel.png, grid.png, graph-fan100.png, dag-dark.png,
// phone-run.png, dag.png, audit-log.png, runs.png,
// log.png, connections.png; with STREAM_NAME and STREAM_TOPIC (a running stream worker's stream,
// one dead letter on it) also the Streams pages: streams.png, stream.png, topic.png.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { createRequire } from "node:module";

const here = dirname(fileURLToPath(import.meta.url));
const base = process.env.BASE_URL ?? "http://127.0.0.1:8080";
const user = process.env.UPDRAFT_USER ?? "admin";
const password = process.env.UPDRAFT_PASSWORD;
const dagId = process.env.DAG_ID ?? "browser_demo";
const artifacts = process.env.ARTIFACTS ?? join(here, "..", "..", "artifacts", "browser");
const message = `hello-from-browser-${Date.now()}`;
const connId = process.env.CONN_ID ?? "browser_api";
const connPassword = process.env.CONN_PASSWORD ?? `pw-${Date.now()}`;
const connToken = `token-${Date.now()}`;
// A running stream worker's stream (with one dead letter) and its topic, for the Streams pages.
const streamName = process.env.STREAM_NAME;
const streamTopic = process.env.STREAM_TOPIC;
if (!password) throw new Error("UPDRAFT_PASSWORD is required");
mkdirSync(artifacts, { recursive: true });

const basic = "Basic " + Buffer.from(`${user}:${password}`).toString("base64");
async function api(path) {
  const response = await fetch(`${base}/api/v1${path}`, { headers: { Authorization: basic } });
  assert.equal(response.status, 200, `GET ${path}`);
  return response.json();
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"],
});
const step = (text) => console.log(`[browser-test] ${text}`);
const axePath = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

// WCAG 2 A and AA rules (labels, names, contrast, …) on the page as it is.
async function accessible(page, what) {
  await page.addScriptTag({ path: axePath });
  const found = await page.evaluate(async () => {
    const result = await window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa"] } });
    return result.violations.map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", ")}`);
  });
  assert.deepEqual(found, [], `${what}: accessibility violations`);
}
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.setDefaultTimeout(15000);

  step("log in");
  await page.goto(`${base}/dags`);
  assert.match(page.url(), /\/login\?next=/, "unauthenticated visitors are sent to the login page");
  await page.fill("input[name=username]", user);
  await page.fill("input[name=password]", password);
  await Promise.all([page.waitForURL(/\/dags$/), page.click("button[type=submit]")]);

  step("unpause with the toggle");
  const toggle = page.locator(`button.switch[data-dag="${dagId}"]`);
  assert.equal(await toggle.getAttribute("aria-checked"), "false", "the DAG starts paused");
  await Promise.all([page.waitForLoadState("load"), toggle.click()]);
  await page.locator(`button.switch[data-dag="${dagId}"][aria-checked="true"]`).waitFor();
  assert.equal((await api(`/dags/${dagId}`)).is_paused, false, "the database says unpaused");
  await page.screenshot({ path: join(artifacts, "dag-list.png"), fullPage: true });

  step("trigger with the params form (bad JSON is caught inline)");
  await page.click(`a.dag-link:text-is("${dagId}")`);
  await page.waitForURL(new RegExp(`/dags/${dagId}$`));
  const field = page.locator('input[name="param:message"]');
  assert.equal(await field.inputValue(), "hi", "the param's field holds its default");
  await page.fill("textarea[name=conf]", "{not json");
  await page.click("form.trigger button[type=submit]");
  await page.locator("#err-conf:not([hidden])").waitFor();
  assert.match(await page.locator("#err-conf").textContent(), /Not valid JSON/, "checked inline, not sent");
  await page.fill("textarea[name=conf]", "{}");
  await field.fill(message);
  await Promise.all([page.waitForURL(/\/runs\//), page.click("form.trigger button[type=submit]")]);
  const runUrl = page.url();

  step("the run page fills in live, without a reload");
  await page.evaluate(() => { window.notReloaded = true; });
  const sayLink = page.locator("tr[data-task=say] a");
  await sayLink.first().waitFor({ timeout: 30000 });
  assert.equal(await page.evaluate(() => window.notReloaded), true, "the run page was not reloaded");
  await page.screenshot({ path: join(artifacts, "run-live.png"), fullPage: true });

  step("follow the running task's log");
  await Promise.all([page.waitForURL(/\/tasks\/say/), sayLink.first().click()]);
  const log = page.locator("#log");
  await log.filter({ hasText: message }).waitFor();
  const followed = !(await log.textContent()).includes("finished-saying");
  await log.filter({ hasText: "finished-saying" }).waitFor({ timeout: 30000 });
  step(followed ? "the log page showed a line written after it loaded" : "the try had ended before the page loaded");
  const logUrl = page.url();

  step("watch the run turn green, live");
  await page.goto(runUrl);
  await page.evaluate(() => { window.notReloaded = true; });
  const badge = page.locator("#run-state .badge");
  await page.locator("#run-state .badge.st-success, #run-state .badge.st-failed").waitFor({ timeout: 60000 });
  assert.equal(await badge.textContent(), "success", "the run failed");
  assert.equal(await page.evaluate(() => window.notReloaded), true, "the run page was not reloaded");
  assert.equal(await badge.evaluate((el) => getComputedStyle(el).backgroundColor), "rgb(0, 128, 0)");
  step("the run's Gantt chart shows every try");
  await page.locator('#gantt g.try[data-task="done"]').waitFor();
  assert.equal(await page.locator("#gantt g.try").count(), 2, "one try of `say`, one of `done`");
  await page.screenshot({ path: join(artifacts, "run.png"), fullPage: true });
  if (process.env.REQUIRE_FOLLOW === "1") assert.ok(followed, "the log page did not follow the running try");

  step("grid: the side panel shows a task's log; arrows and Escape");
  await page.goto(`${base}/dags/${dagId}#grid`);
  const sayCell = page.locator('table.grid button.cell.st-success[data-task="say"]').last();
  await sayCell.click();
  await page.locator("#panel #panel-log", { hasText: "finished-saying" }).waitFor();
  assert.match(await page.locator("#panel h3").textContent(), /say/);
  await page.screenshot({ path: join(artifacts, "grid-panel.png"), fullPage: true });
  await page.keyboard.press("ArrowDown");
  await page.locator("#panel h3", { hasText: "done" }).waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.dataset.task), "done");
  await page.keyboard.press("Escape");
  assert.equal(await page.locator("#panel").isHidden(), true, "Escape closes the panel");

  step("grid: a new run appears without a reload");
  await page.locator('body[data-live="ready"]').waitFor();
  await page.evaluate(() => { window.notReloaded = true; });
  const bars = await page.locator("table.grid .bar").count();
  const triggered = await fetch(`${base}/api/v1/dags/${dagId}/dagRuns`, {
    method: "POST", headers: { Authorization: basic, "Content-Type": "application/json" },
    body: JSON.stringify({ dag_run_id: `live-${Date.now()}`, conf: { message: "live" } }) });
  assert.equal(triggered.status, 200, "trigger through the API");
  const liveRun = (await triggered.json()).dag_run_id;
  await page.locator(`table.grid .bar[data-run="${liveRun}"]`).waitFor({ timeout: 10000 });
  await page.locator(`table.grid .bar.st-success[data-run="${liveRun}"]`).waitFor({ timeout: 60000 });
  assert.equal(await page.locator("table.grid .bar").count(), bars + 1);
  assert.equal(await page.evaluate(() => window.notReloaded), true, "the DAG page was not reloaded");
  await page.screenshot({ path: join(artifacts, "grid.png"), fullPage: true });

  step("the graph of a 100-wide fan-out fits the viewport's width; zoom and pan");
  await page.goto(`${base}/dags/fan100`);
  const svg = page.locator(".graph svg");
  const box = await svg.boundingBox();
  const viewport = page.viewportSize();
  assert.ok(box.x >= 0 && box.x + box.width <= viewport.width, `graph ${JSON.stringify(box)} in ${viewport.width} px`);
  assert.equal(await page.locator(".graph .node").count(), 102);
  const last = await page.locator('.graph .node[data-task="join"] rect').boundingBox();
  assert.ok(last.x + last.width <= viewport.width, "the last task is on screen");
  await page.screenshot({ path: join(artifacts, "graph-fan100.png"), fullPage: false });
  const fitted = await svg.getAttribute("viewBox");
  await page.click('.graph-tools button[aria-label="Zoom in"]');
  assert.notEqual(await svg.getAttribute("viewBox"), fitted, "zoomed in");
  await page.click('.graph-tools button[aria-label="Show the whole graph"]');
  assert.equal(await svg.getAttribute("viewBox"), fitted, "back to the whole graph");

  if (streamName) {
    step("the Streams pages: a running stream, its dead letter and replay button, the topic browser");
    await page.goto(`${base}/streams`);
    const streamRow = page.locator(`tr[data-stream="${streamName}"]`);
    await streamRow.waitFor();
    assert.match(await streamRow.textContent(), /running/);
    await page.screenshot({ path: join(artifacts, "streams.png"), fullPage: true });
    await Promise.all([page.waitForURL(new RegExp(`/streams/${streamName}$`)), streamRow.locator("a").first().click()]);
    await page.locator("table.records tr[data-offset]").first().waitFor();
    assert.match(await page.locator("table.records").textContent(), /not_json/, "the dead letter's reason is shown");
    await page.locator('button:text-is("Replay dead letters")').waitFor();
    await page.screenshot({ path: join(artifacts, "stream.png"), fullPage: true });
    await page.goto(`${base}/topics/${streamTopic}`);
    await page.locator("table.records tr[data-offset]").first().waitFor();
    await page.screenshot({ path: join(artifacts, "topic.png"), fullPage: true });
  }

  step("accessibility (axe, WCAG 2 AA) in the light and the dark theme; a phone's width");
  for (const scheme of ["light", "dark"]) {
    await page.emulateMedia({ colorScheme: scheme });
    const streamPages = streamName ? ["/streams", `/streams/${streamName}`, `/topics/${streamTopic}`] : [];
    for (const path of ["/dags", `/dags/${dagId}`, new URL(runUrl).pathname, "/runs", "/audit-log", ...streamPages]) {
      await page.goto(`${base}${path}`);
      await accessible(page, `${path} (${scheme})`);
    }
    await page.goto(`${base}/dags/${dagId}#grid`);
    await page.locator('table.grid button.cell[data-task="say"]').last().click();
    await page.locator("#panel .panel-head h3").waitFor();
    await accessible(page, `the side panel (${scheme})`);
  }
  await page.screenshot({ path: join(artifacts, "dag-dark.png"), fullPage: true });
  await page.emulateMedia({ colorScheme: "light" });
  const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, isMobile: true });
  await phone.context().addCookies(await page.context().cookies());
  for (const path of ["/dags", `/dags/${dagId}`, new URL(runUrl).pathname, ...(streamName ? [`/streams/${streamName}`] : [])]) {
    await phone.goto(`${base}${path}`);
    const width = await phone.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 390, `${path} is ${width} px wide on a 390 px phone`);
  }
  await phone.screenshot({ path: join(artifacts, "phone-run.png"), fullPage: true });
  await phone.close();

  step("the DAG page: toggle, next-run line, numbered source");
  await page.goto(`${base}/dags/${dagId}`);
  assert.equal(await page.locator(`.dag-head button.switch[data-dag="${dagId}"]`).getAttribute("aria-checked"), "true");
  await page.locator(".dag-meta .next-run").waitFor();
  assert.equal(await page.locator("pre.source #L1 .ln").textContent(), "1");
  await page.screenshot({ path: join(artifacts, "dag.png"), fullPage: true });

  step("the audit log shows the unpause made with the toggle and a pause made through the API");
  const paused = await fetch(`${base}/api/v1/dags/fan100`, {
    method: "PATCH", headers: { Authorization: basic, "Content-Type": "application/json" },
    body: JSON.stringify({ is_paused: true }) });
  assert.equal(paused.status, 200, "pause through the API");
  await page.goto(`${base}/audit-log?event=unpause`);
  const unpaused = page.locator('table.audit-log tr[data-event="unpause"]');
  await unpaused.first().waitFor();
  assert.match(await unpaused.first().textContent(), new RegExp(`${dagId}[\\s\\S]*ui`));
  await page.goto(`${base}/audit-log?event=pause`);
  const pausedRow = page.locator('table.audit-log tr[data-event="pause"]');
  await pausedRow.first().waitFor();
  assert.match(await pausedRow.first().textContent(), /fan100[\s\S]*api/);
  await page.screenshot({ path: join(artifacts, "audit-log.png"), fullPage: true });

  step("Browse → Runs lists the run");
  await page.click('header nav a:text-is("Runs")');
  await page.waitForURL(/\/runs$/);
  await page.locator(`table.runs-browse tr td a:text-is("${dagId}")`).first().waitFor();
  await page.screenshot({ path: join(artifacts, "runs.png"), fullPage: true });

  step("task log shows the output");
  await page.goto(logUrl);
  await page.locator("#log", { hasText: "finished-saying" }).waitFor();
  assert.equal(await page.locator("#ti-state").textContent(), "success");
  await page.screenshot({ path: join(artifacts, "log.png"), fullPage: true });

  step("add a connection in Admin → Connections, test it, save it");
  await page.click('header nav a:text-is("Connections")');
  await page.waitForURL(/\/connections$/);
  await Promise.all([page.waitForURL(/\/connections\/new$/), page.click('a.button:text-is("Add a connection")')]);
  const server = new URL(base);
  await page.fill("input[name=connection_id]", connId);
  await page.selectOption("select[name=conn_type]", "http");
  await page.fill("input[name=host]", server.hostname);
  await page.fill("input[name=port]", server.port);
  await page.fill("input[name=schema]", "health");
  await page.fill("input[name=login]", "browser");
  await page.fill("input[name=password]", connPassword);
  await page.fill("textarea[name=extra]", JSON.stringify({ token: connToken, timeout: 5 }));
  await Promise.all([page.waitForURL(/\/connections\/test$/), page.click('button:text-is("Test")')]);
  const outcome = page.locator("#test-result");
  assert.equal(await outcome.getAttribute("data-ok"), "true", `test: ${await outcome.textContent()}`);
  assert.match(await outcome.textContent(), /answered 200/);
  await Promise.all([page.waitForURL(/\/connections\?saved=/), page.click('button:text-is("Save")')]);
  const row = page.locator(`tr[data-conn="${connId}"]`);
  await row.waitFor();
  const html = await page.content();
  assert.ok(!html.includes(connPassword) && !html.includes(connToken), "no secret on the list page");
  await page.screenshot({ path: join(artifacts, "connections.png"), fullPage: true });
  await row.locator('a:text-is("Edit")').click();
  await page.waitForURL(/\/edit$/);
  assert.equal(await page.inputValue("input[name=password]"), "", "a stored password is not put into the form");
  assert.equal(JSON.parse(await page.inputValue("textarea[name=extra]")).token, "***");
  const stored = await api(`/connections/${connId}`);
  assert.equal(stored.host, server.hostname);
  assert.ok(!("password" in stored), "the API never answers a password");
  step(`ok; screenshots in ${artifacts}`);
} finally {
  await browser.close();
}
