// Updraft UI: follows running logs, refreshes pages of unfinished runs, asks before deleting.
// No framework.
"use strict";

function followLog(pre) {
  const url = pre.dataset.follow;
  let after = pre.dataset.after || "0";
  let running = pre.dataset.running === "true";
  const badge = document.getElementById("ti-state");
  async function poll() {
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
        if (badge) { badge.textContent = body.state; badge.className = "badge st-" + body.state; }
      }
    } catch (error) { console.warn("log poll failed", error); }
    if (running) setTimeout(poll, 1000);
  }
  setTimeout(poll, running ? 1000 : 0);
}

document.addEventListener("DOMContentLoaded", () => {
  const log = document.getElementById("log");
  if (log && log.dataset.follow) followLog(log);
  const refresh = document.querySelector("[data-refresh]");
  if (refresh) setTimeout(() => location.reload(), Number(refresh.dataset.refresh) || 2000);
  const trigger = document.querySelector("form.trigger");
  if (trigger) trigger.addEventListener("submit", (event) => {
    const text = trigger.elements.conf.value.trim();
    try { if (text && (typeof JSON.parse(text) !== "object" || Array.isArray(JSON.parse(text)))) throw new Error("not an object"); }
    catch (error) { event.preventDefault(); alert("Conf must be a JSON object: " + error.message); }
  });
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => { if (!confirm(form.dataset.confirm)) event.preventDefault(); });
  }
});
