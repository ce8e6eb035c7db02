// Updraft UI: live updates (server-sent events), the grid's tooltips, side panel and keyboard,
// the graph's zoom and pan, followed logs, confirmations. No framework.
"use strict";

function fmtDate(iso) { return iso ? iso.replace("T", " ").slice(0, 19) : ""; }

function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 60) return seconds.toFixed(2) + "s";
  if (seconds < 3600) return Math.floor(seconds / 60) + "m " + String(Math.floor(seconds % 60)).padStart(2, "0") + "s";
  return Math.floor(seconds / 3600) + "h " + String(Math.floor((seconds % 3600) / 60)).padStart(2, "0") + "m";
}

function setState(element, prefix, state) {
  element.className = element.className.split(" ").filter((c) => !c.startsWith("st-")).concat("st-" + state).join(" ");
  if (prefix === "badge") element.textContent = state;
}

function byRunTask(selector, run, task) {
  let query = selector + '[data-run="' + CSS.escape(run) + '"]';
  if (task !== undefined) query += '[data-task="' + CSS.escape(task) + '"]';
  return document.querySelectorAll(query);
}

function followLog(pre) {
  const url = pre.dataset.follow;
  let after = pre.dataset.after || "0";
  let running = pre.dataset.running === "true";
  const badge = document.getElementById("ti-state");
  async function poll() {
    if (!pre.isConnected) return; // the panel it was in was closed
    try {
      const response = await fetch(url + "&after=" + encodeURIComponent(after), {
        headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (response.ok) {
        const body = await response.json();
        if (body.lines.length > 0) {
          const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
          pre.append((pre.textContent ? "\n" : "") + body.lines.join("\n"));
          if (atBottom) pre.scrollTop = pre.scrollHeight;
        }
        after = String(body.next);
        running = body.running;
        if (badge) setState(badge, "badge", body.state);
      }
    } catch (error) { console.warn("log poll failed", error); }
    if (running) setTimeout(poll, 1000);
  }
  pre.scrollTop = pre.scrollHeight;
  setTimeout(poll, running ? 1000 : 0);
}

// ---- Live updates --------------------------------------------------------------------------

const refreshing = new Set();

// Something the page does not show yet (a new run, the task instances of a run that just
// started): the part of the page that lists them is read again, once per burst of changes.
function refreshPart(selector, then) {
  if (refreshing.has(selector) || !document.querySelector(selector)) return;
  refreshing.add(selector);
  setTimeout(async () => {
    refreshing.delete(selector);
    const response = await fetch(location.pathname + location.search, { credentials: "same-origin" });
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html").querySelector(selector);
    const current = document.querySelector(selector);
    if (fresh && current) { hideTip(); current.replaceWith(fresh); if (then) then(); }
  }, 300);
}

function refreshGrid() {
  const section = document.getElementById("grid");
  if (section && section.dataset.latest === "true") refreshPart("#grid .grid-scroll", () => initGrid(section));
}

function runTip(run) {
  return ["Run " + run.run_id, "State: " + run.state, "Logical date: " + fmtDate(run.logical_date),
    "Start: " + fmtDate(run.start_date), "End: " + fmtDate(run.end_date)].join("\n");
}

function tiTip(ti) {
  return [ti.task_id, "Run: " + ti.run_id, "State: " + ti.state, "Try: " + ti.try_number,
    "Start: " + fmtDate(ti.start_date), "End: " + fmtDate(ti.end_date),
    "Duration: " + fmtDuration(ti.duration)].join("\n");
}

function applyRun(dagId, run) {
  // DAG list: the recent-runs dots, oldest left.
  for (const marks of document.querySelectorAll('.marks[data-dag="' + CSS.escape(dagId) + '"]')) {
    let mark = marks.querySelector('.mark[data-run="' + CSS.escape(run.run_id) + '"]');
    if (!mark) {
      mark = document.createElement("a");
      mark.className = "mark";
      mark.dataset.run = run.run_id;
      mark.href = run.href;
      marks.append(mark);
      while (marks.children.length > 10) marks.firstElementChild.remove();
    }
    setState(mark, "mark", run.state);
    mark.title = run.run_id + " · " + fmtDate(run.logical_date) + " · " + run.state;
    mark.setAttribute("aria-label", mark.title);
  }
  const bars = byRunTask("#grid .bar", run.run_id);
  for (const bar of bars) { setState(bar, "bar", run.state); bar.dataset.tip = runTip(run); }
  if (bars.length === 0 && document.getElementById("grid")) refreshGrid();
  for (const heading of byRunTask("#run-state", run.run_id)) setState(heading.querySelector(".badge"), "badge", run.state);
}

function applyTi(ti) {
  const cells = byRunTask("#grid .cell", ti.run_id, ti.task_id);
  for (const cell of cells) {
    if (cell.tagName !== "BUTTON") { refreshGrid(); continue; }
    setState(cell, "cell", ti.state);
    cell.dataset.try = ti.try_number;
    cell.dataset.tip = tiTip(ti);
    cell.setAttribute("aria-label", cell.dataset.tip);
  }
  if (cells.length === 0 && document.getElementById("grid")) refreshGrid();
  const graph = document.querySelector(".graph[data-run]");
  if (graph && graph.dataset.run === ti.run_id) {
    for (const node of graph.querySelectorAll('.node[data-task="' + CSS.escape(ti.task_id) + '"]')) setState(node, "node", ti.state);
  }
  if (byRunTask("table.tis", ti.run_id).length) refreshPart("#gantt");
  for (const table of byRunTask("table.tis", ti.run_id)) {
    const row = table.querySelector('tr[data-task="' + CSS.escape(ti.task_id) + '"]');
    if (!row) { refreshPart("table.tis"); continue; }
    setState(row.querySelector('[data-col="state"]'), "badge", ti.state);
    row.querySelector('[data-col="try"]').textContent = ti.try_number;
    row.querySelector('[data-col="start"]').textContent = fmtDate(ti.start_date);
    row.querySelector('[data-col="end"]').textContent = fmtDate(ti.end_date);
    row.querySelector('[data-col="duration"]').textContent = fmtDuration(ti.duration);
  }
  const panel = document.getElementById("panel");
  if (panel && !panel.hidden && panel.dataset.run === ti.run_id && panel.dataset.task === ti.task_id) {
    const badge = panel.querySelector("[data-panel-state]");
    if (badge) setState(badge, "badge", ti.state);
  }
}

function startLive(marker) {
  const params = new URLSearchParams({ after: marker.dataset.liveAfter });
  for (const id of (marker.dataset.liveDags || "").split("\n")) if (id.trim()) params.append("dag_id", id.trim());
  const source = new EventSource("/events?" + params);
  source.addEventListener("change", (event) => {
    const changes = JSON.parse(event.data);
    for (const run of changes.runs) applyRun(changes.dag_id, run);
    for (const ti of changes.tis) applyTi(ti);
    document.body.dataset.liveEvents = String(Number(document.body.dataset.liveEvents || 0) + 1);
  });
  // Fell behind, or the server lost its database connection: what changed meanwhile is unknown.
  source.addEventListener("resync", () => { source.close(); location.reload(); });
  source.addEventListener("ready", () => { document.body.dataset.live = "ready"; });
}

// ---- Grid: tooltips, side panel, keyboard ---------------------------------------------------

let tooltip = null;

function showTip(target) {
  if (!tooltip) {
    tooltip = document.createElement("div");
    tooltip.className = "tooltip";
    tooltip.setAttribute("role", "tooltip");
    document.body.append(tooltip);
  }
  tooltip.textContent = target.dataset.tip;
  const box = target.getBoundingClientRect();
  tooltip.style.left = Math.min(window.scrollX + box.right + 8, window.scrollX + document.documentElement.clientWidth - 260) + "px";
  tooltip.style.top = (window.scrollY + box.top) + "px";
  tooltip.hidden = false;
}

function hideTip() { if (tooltip) tooltip.hidden = true; }

async function openPanel(cell) {
  const panel = document.getElementById("panel");
  if (!panel || !cell.dataset.panel) return;
  for (const selected of document.querySelectorAll("#grid .cell.selected")) selected.classList.remove("selected");
  cell.classList.add("selected");
  panel.dataset.run = cell.dataset.run;
  panel.dataset.task = cell.dataset.task;
  colourGraph(cell.dataset.run);
  panel.hidden = false;
  panel.setAttribute("aria-busy", "true");
  const response = await fetch(cell.dataset.panel, { credentials: "same-origin" });
  panel.removeAttribute("aria-busy");
  if (panel.dataset.task !== cell.dataset.task || panel.dataset.run !== cell.dataset.run) return;
  panel.innerHTML = response.ok ? await response.text() : "<p class=\"error\">Cannot load the task instance.</p>";
  const log = panel.querySelector("pre[data-follow]");
  if (log) followLog(log);
  bindConfirms(panel);
  const close = panel.querySelector("[data-close-panel]");
  if (close) close.addEventListener("click", () => closePanel());
}

function closePanel() {
  const panel = document.getElementById("panel");
  if (!panel || panel.hidden) return;
  panel.hidden = true;
  panel.innerHTML = "";
  const selected = document.querySelector("#grid .cell.selected");
  if (selected) { selected.classList.remove("selected"); selected.focus(); }
}

function initGrid(section) {
  const table = section.querySelector("table.grid");
  if (!table) return;
  const rows = () => Array.from(table.querySelectorAll("tbody tr"));
  const cellAt = (r, c) => { const row = rows()[r]; return row ? row.querySelectorAll("td")[c] : null; };
  const cells = table.querySelectorAll("button.cell");
  // Roving focus: one cell in the tab order, the newest run's first task.
  const start = table.querySelector("tbody tr:first-child td:last-child button.cell") || cells[0];
  if (start) start.tabIndex = 0;
  table.addEventListener("click", (event) => {
    const cell = event.target.closest("button.cell");
    if (cell) openPanel(cell);
  });
  table.addEventListener("keydown", (event) => {
    const td = event.target.closest("td");
    if (!td) return;
    const r = rows().indexOf(td.parentElement);
    const c = Array.from(td.parentElement.querySelectorAll("td")).indexOf(td);
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    const move = moves[event.key];
    if (!move) return;
    event.preventDefault();
    let [nr, nc] = [r + move[0], c + move[1]];
    while (cellAt(nr, nc)) {
      const next = cellAt(nr, nc).querySelector("button.cell");
      if (next) {
        for (const cell of table.querySelectorAll("button.cell")) cell.tabIndex = -1;
        next.tabIndex = 0;
        next.focus();
        if (!document.getElementById("panel").hidden) openPanel(next);
        return;
      }
      nr += move[0]; nc += move[1];
    }
  });
  for (const target of table.querySelectorAll("[data-tip]")) {
    target.addEventListener("mouseenter", () => showTip(target));
    target.addEventListener("mouseleave", hideTip);
    target.addEventListener("focus", () => showTip(target));
    target.addEventListener("blur", hideTip);
  }
}

// ---- Graph: zoom, pan, colours of the selected run -------------------------------------------

function initGraph(box) {
  const svg = box.querySelector("svg");
  if (!svg || !svg.viewBox.baseVal) return;
  const whole = { x: 0, y: 0, w: svg.viewBox.baseVal.width, h: svg.viewBox.baseVal.height };
  let view = { ...whole };
  const apply = () => svg.setAttribute("viewBox", [view.x, view.y, view.w, view.h].join(" "));
  // Zoom by `factor` around (cx, cy) in drawing units; never wider than the whole drawing.
  const zoom = (factor, cx = view.x + view.w / 2, cy = view.y + view.h / 2) => {
    const w = Math.min(whole.w, Math.max(whole.w / 12, view.w / factor));
    const h = w * whole.h / whole.w;
    view = { x: cx - (cx - view.x) * w / view.w, y: cy - (cy - view.y) * h / view.h, w, h };
    if (w === whole.w) view = { ...whole };
    apply();
  };
  const tools = document.createElement("div");
  tools.className = "graph-tools";
  for (const [label, title, act] of [["+", "Zoom in", () => zoom(1.4)], ["−", "Zoom out", () => zoom(1 / 1.4)],
    ["Fit", "Show the whole graph", () => { view = { ...whole }; apply(); }]]) {
    const button = document.createElement("button");
    button.type = "button"; button.textContent = label; button.title = title; button.setAttribute("aria-label", title);
    button.addEventListener("click", act);
    tools.append(button);
  }
  box.prepend(tools);
  const units = () => view.w / svg.getBoundingClientRect().width;
  svg.addEventListener("wheel", (event) => {
    if (!event.ctrlKey && !event.metaKey) return; // a plain wheel scrolls the page
    event.preventDefault();
    const rect = svg.getBoundingClientRect();
    zoom(event.deltaY < 0 ? 1.2 : 1 / 1.2, view.x + (event.clientX - rect.left) * units(), view.y + (event.clientY - rect.top) * units());
  }, { passive: false });
  let drag = null;
  svg.addEventListener("pointerdown", (event) => { drag = { x: event.clientX, y: event.clientY, moved: false }; });
  svg.addEventListener("pointermove", (event) => {
    if (!drag || view.w === whole.w) return;
    const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
    view.x -= dx * units(); view.y -= dy * units();
    drag.x = event.clientX; drag.y = event.clientY;
    apply();
  });
  svg.addEventListener("pointerup", () => { setTimeout(() => { drag = null; }, 0); });
  // A drag is not a click on the node it ends over.
  svg.addEventListener("click", (event) => { if (drag && drag.moved) event.preventDefault(); }, true);
}

// Colours the graph by the run of the cell opened in the grid.
function colourGraph(run) {
  const graph = document.querySelector(".graph[data-run]");
  if (!graph || graph.dataset.run === run) return;
  graph.dataset.run = run;
  for (const node of graph.querySelectorAll(".node[data-task]")) {
    const cell = byRunTask("#grid .cell", run, node.dataset.task)[0];
    setState(node, "node", cell ? (cell.className.match(/st-(\w+)/) || [, "none"])[1] : "none");
    const link = node.closest("a");
    if (link && cell && cell.dataset.panel) link.setAttribute("href", cell.dataset.panel.replace(/\/panel$/, ""));
  }
  const caption = document.getElementById("graph-caption");
  if (caption) caption.textContent = "coloured by run " + run;
}

// ---- Trigger form: each param's value checked as it is typed ---------------------------------

// Why `text` is not a value of a field of `kind`, or "" when it is.
function fieldProblem(kind, text) {
  const blank = text.trim() === "";
  if (kind === "integer") return blank || /^-?\d+$/.test(text.trim()) ? "" : "Enter a whole number.";
  if (kind === "number") return blank || Number.isFinite(Number(text)) ? "" : "Enter a number.";
  if (kind === "json" || kind === "conf") {
    if (blank) return "";
    try {
      const value = JSON.parse(text);
      if (kind === "conf" && (typeof value !== "object" || value === null || Array.isArray(value))) return "Enter a JSON object, like {\"key\": 1}.";
      return "";
    } catch (error) { return "Not valid JSON: " + error.message; }
  }
  return "";
}

function initTriggerForm(form) {
  const check = (field) => {
    const input = field.querySelector("input, textarea");
    const message = field.querySelector(".field-error");
    if (!input || !message) return true;
    const problem = fieldProblem(field.dataset.paramKind, input.value);
    message.textContent = problem;
    message.hidden = problem === "";
    input.setAttribute("aria-invalid", problem === "" ? "false" : "true");
    return problem === "";
  };
  const fields = Array.from(form.querySelectorAll(".field[data-param-kind]"));
  for (const field of fields) field.addEventListener("input", () => check(field));
  form.addEventListener("submit", (event) => {
    const bad = fields.filter((field) => !check(field));
    if (bad.length) { event.preventDefault(); bad[0].querySelector("input, textarea").focus(); }
  });
}

function bindConfirms(root) {
  for (const form of root.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => { if (!confirm(form.dataset.confirm)) event.preventDefault(); });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const log = document.getElementById("log");
  if (log && log.dataset.follow) followLog(log);
  const marker = document.querySelector("[data-live-after]");
  if (marker && window.EventSource) startLive(marker);
  const grid = document.getElementById("grid");
  if (grid) initGrid(grid);
  const graph = document.querySelector(".graph");
  if (graph) initGraph(graph);
  document.addEventListener("keydown", (event) => { if (event.key === "Escape") { hideTip(); closePanel(); } });
  const trigger = document.querySelector("form.trigger");
  if (trigger) initTriggerForm(trigger);
  bindConfirms(document);
});
