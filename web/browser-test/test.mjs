// Browser test of the Updraft UI, in Debian's headless Chromium driven by playwright-core.
// Needs a running `updraft standalone` whose DAGs folder holds DAG_ID (paused, one shell task
// that echoes params.message). Environment:
//   BASE_URL (http://127.0.0.1:8080), UPDRAFT_USER (admin), UPDRAFT_PASSWORD, DAG_ID (browser_demo),
//   ARTIFACTS (../../artifacts/browser), CHROMIUM (/usr/bin/chromium)
// Steps: log in, unpause the DAG with its toggle, trigger it with a conf, watch the run turn
// green, open the task log and see the output, add a connection (CONN_ID, CONN_PASSWORD) in
// Admin → Connections with its Test button. Screenshots: dag-list.png, grid.png, log.png,
// connections.png.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";

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

  step("trigger with a conf");
  await page.click(`a.dag-link:text-is("${dagId}")`);
  await page.waitForURL(new RegExp(`/dags/${dagId}$`));
  const prefilled = JSON.parse(await page.inputValue("textarea[name=conf]"));
  assert.ok("message" in prefilled, "conf is prefilled from params");
  await page.fill("textarea[name=conf]", JSON.stringify({ message }));
  await Promise.all([page.waitForURL(/\/runs\//), page.click("form.trigger button[type=submit]")]);
  const runUrl = page.url();

  step("follow the running task's log");
  // The run page refreshes itself while unfinished: wait for the `say` row's link.
  const sayLink = page.locator("tr[data-task=say] a");
  for (const deadline = Date.now() + 30000; !(await sayLink.count()); ) {
    assert.ok(Date.now() < deadline, "no task instance `say` after 30 s");
    await page.waitForTimeout(300);
    if (!page.url().startsWith(runUrl)) await page.goto(runUrl);
  }
  await Promise.all([page.waitForURL(/\/tasks\/say/), sayLink.first().click()]);
  const log = page.locator("#log");
  await log.filter({ hasText: message }).waitFor();
  const followed = !(await log.textContent()).includes("finished-saying");
  await log.filter({ hasText: "finished-saying" }).waitFor({ timeout: 30000 });
  step(followed ? "the log page showed a line written after it loaded" : "the try had ended before the page loaded");
  const logUrl = page.url();

  step("watch the run turn green");
  await page.goto(runUrl);
  const deadline = Date.now() + 60000;
  for (;;) {
    const state = await page.locator("#run-state").getAttribute("data-state");
    if (state === "success") break;
    assert.notEqual(state, "failed", "the run failed");
    assert.ok(Date.now() < deadline, `run still ${state} after 60 s`);
    await page.waitForTimeout(500); // the page reloads itself every 2 s while unfinished
    if (page.url() !== runUrl) await page.goto(runUrl);
  }
  const badge = page.locator("#run-state .badge");
  assert.equal(await badge.evaluate((el) => getComputedStyle(el).backgroundColor), "rgb(0, 128, 0)");
  if (process.env.REQUIRE_FOLLOW === "1") assert.ok(followed, "the log page did not follow the running try");

  step("grid");
  await page.goto(`${base}/dags/${dagId}#grid`);
  await page.locator("table.grid a.cell.st-success").first().waitFor();
  await page.screenshot({ path: join(artifacts, "grid.png"), fullPage: true });

  step("the DAG page: toggle, next-run line, numbered source");
  await page.goto(`${base}/dags/${dagId}`);
  assert.equal(await page.locator(`.dag-head button.switch[data-dag="${dagId}"]`).getAttribute("aria-checked"), "true");
  await page.locator(".dag-meta .next-run").waitFor();
  assert.equal(await page.locator("pre.source #L1 .ln").textContent(), "1");
  await page.screenshot({ path: join(artifacts, "dag.png"), fullPage: true });

  step("the audit log shows the unpause made with the toggle");
  await page.goto(`${base}/audit-log?event=unpause`);
  const unpaused = page.locator('table.audit-log tr[data-event="unpause"]');
  await unpaused.first().waitFor();
  assert.match(await unpaused.first().textContent(), new RegExp(`${dagId}[\\s\\S]*ui`));
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
