"""The `ui` benchmark: the web UI at scale, and its live updates under load.

1,000 DAGs of 100 tasks (a fan-out: one task, 98 beside each other, one after them) behind one
`updraft standalone`, then 10,150 finished runs and 1,015,000 task instances inserted (ten DAGs
have 25 runs, the grid's width; the others 10) and 10,000 audit events: p50/p95 of the DAG list,
the DAG page (graph of 100 tasks laid out, grid of 25 runs, durations, calendar), the run page
(100 task instances and the Gantt chart) and each browse page. Then 200 clients follow
`GET /events` for a DAG while 100 of its runs are triggered at once and run (a chain of five
`sleep 0.2` tasks): how long after a task's start or end each client got it (p50/p95/max, the
database's timestamps against the arrival on this machine), and the server's CPU and RSS
meanwhile."""
import datetime
import http.client
import json
import os
import subprocess
import threading
import time
from pathlib import Path

from api_bench import percentile, psql, rss_mb, standalone, time_pages, wait_until

LIVE = "live_chain"


def dag_file(index, tasks):
    middle = "\n".join(f"  - id: t{task:02d}\n    operator: empty\n    upstream: [t00]" for task in range(1, tasks - 1))
    ids = ", ".join(f"t{task:02d}" for task in range(1, tasks - 1))
    return (f"dag_id: ui_{index:04d}\nschedule: \"{index % 60} 3 * * *\"\nstart_date: 2024-01-01\n"
            f"catchup: false\ntags: [bench, group{index % 10}]\ntasks:\n  - id: t00\n    operator: empty\n"
            f"{middle}\n  - id: t{tasks - 1:02d}\n    operator: empty\n    upstream: [{ids}]\n")


def live_file():
    tasks = "\n".join(
        f"  - id: s{task}\n    operator: shell\n    command: sleep 0.2" + (f"\n    upstream: [s{task - 1}]" if task else "")
        for task in range(5))
    return (f"dag_id: {LIVE}\nschedule: null\nis_paused_upon_creation: false\nmax_active_runs: 100\n"
            f"max_active_tasks: 100\ntasks:\n{tasks}\n")


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Follower(threading.Thread):
    """One browser's `GET /events?dag_id=LIVE`: records, for each task start and end it is
    told about, how long after the database's timestamp it arrived."""

    def __init__(self, base, basic):
        super().__init__(daemon=True)
        self.port, self.basic = int(base.rsplit(":", 1)[1]), basic
        self.ready = threading.Event()
        self.stop = False
        self.delays = []
        self.seen = set()
        self.error = None

    def run(self):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            connection.request("GET", f"/events?dag_id={LIVE}", headers={"Authorization": self.basic})
            response = connection.getresponse()
            event, data = None, []
            while not self.stop:
                line = response.fp.readline()
                if not line:
                    break
                line = line.decode().rstrip("\n")
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())
                elif line == "":
                    arrived = datetime.datetime.now(datetime.timezone.utc)
                    if event == "ready":
                        self.ready.set()
                    elif event == "change":
                        self.record(json.loads("".join(data)), arrived)
                    event, data = None, []
        except Exception as error:  # a failed follower is reported, not hidden
            self.error = repr(error)
            self.ready.set()

    def record(self, changes, arrived):
        for ti in changes["tis"]:
            for moment in ("start_date", "end_date"):
                key = (ti["run_id"], ti["task_id"], ti["try_number"], moment)
                if ti.get(moment) and key not in self.seen:
                    self.seen.add(key)
                    at = datetime.datetime.fromisoformat(ti[moment].replace("Z", "+00:00"))
                    self.delays.append((arrived - at).total_seconds() * 1000)


def run(root, profile, smoke, progress):
    dags = 20 if smoke else 1000
    tasks = 10 if smoke else 100
    runs_per_dag = 2 if smoke else 10
    wide = 2 if smoke else 10  # DAGs with a full grid of 25 runs
    samples = 10 if smoke else 200
    followers = 5 if smoke else 200
    live_runs = 5 if smoke else 100
    files = {f"ui_{index:04d}.yaml": dag_file(index, tasks) for index in range(dags)}
    files[f"{LIVE}.yaml"] = live_file()
    with standalone(root, profile, "ui", files) as (process, client, url, log):
        progress(f"  ui: waiting for {dags + 1} DAGs of {tasks} tasks to load")
        wait_until("the DAGs", lambda: json.loads(client.request("GET", "/api/v1/dags?limit=1")[1])["total_entries"] == dags + 1,
                   300, process, log)
        progress("  ui: inserting runs, task instances and audit events")
        psql(url, f"""
            INSERT INTO dag_run (dag_id, run_id, run_type, logical_date, data_interval_start, data_interval_end,
                                 state, dag_version_id, start_date, end_date)
            SELECT d.dag_id, 'scheduled__' || n, 'scheduled', timestamptz '2025-01-01' + n * interval '1 day',
                   timestamptz '2025-01-01' + n * interval '1 day', timestamptz '2025-01-02' + n * interval '1 day',
                   CASE WHEN n % 7 = 0 THEN 'failed' ELSE 'success' END, d.latest_version_id,
                   timestamptz '2025-01-02 03:00' + n * interval '1 day',
                   timestamptz '2025-01-02 03:05' + n * interval '1 day'
              FROM dag d, generate_series(1, CASE WHEN d.dag_id < 'ui_{wide:04d}' THEN 25 ELSE {runs_per_dag} END) n
             WHERE d.dag_id LIKE 'ui_%';
            INSERT INTO task_instance (dag_run_id, dag_id, run_id, task_id, operator, state, try_number,
                                       queued_at, start_date, end_date, duration)
            SELECT r.id, r.dag_id, r.run_id, 't' || lpad(t::text, 2, '0'), 'empty',
                   CASE WHEN r.state = 'failed' AND t = {tasks - 2} THEN 'failed'
                        WHEN r.state = 'failed' AND t = {tasks - 1} THEN 'upstream_failed' ELSE 'success' END,
                   1, r.start_date, r.start_date + t * interval '1 second',
                   r.start_date + t * interval '1 second' + (1 + t % 5) * interval '1 second', 1 + t % 5
              FROM dag_run r, generate_series(0, {tasks - 1}) t;
            INSERT INTO event_log (event, owner, source, dag_id, run_id)
            SELECT 'trigger', 'admin', 'api', 'ui_' || lpad((n % {dags})::text, 4, '0'), 'manual__' || n
              FROM generate_series(1, 10000) n;
            ANALYZE dag, dag_version, dag_run, task_instance, event_log;""")
        counts = psql_counts(url)
        progress(f"  ui: {counts['runs']:,} runs, {counts['tis']:,} task instances")
        client.login()
        pages = {
            "DAG list": "/dags",
            "DAG list, page 10": "/dags?page=10",
            f"DAG page (graph of {tasks} tasks, grid of 25 runs)": "/dags/ui_0000",
            f"run page ({tasks} task instances, Gantt)": "/dags/ui_0000/runs/scheduled__25",
            "Browse runs": "/runs",
            "Browse runs, one DAG's failed": f"/runs?dag_id=ui_{dags // 2:04d}&state=failed",
            "Browse task instances": "/task-instances",
            "Browse task instances, failed": "/task-instances?state=failed",
            "Audit log": "/audit-log",
        }
        results = time_pages(client, {name: (path, False) for name, path in pages.items()}, samples,
                             lambda name: progress(f"  ui: {samples} x {name}"))

        progress(f"  ui: {followers} clients follow /events while {live_runs} runs of {LIVE} run")
        clients = [Follower(client.base, client.basic) for _ in range(followers)]
        for follower in clients:
            follower.start()
        for follower in clients:
            follower.ready.wait(60)
        failed = [f.error for f in clients if f.error]
        if failed:
            raise RuntimeError(f"{len(failed)} followers failed: {failed[:3]}")
        rss_before = rss_mb(process.pid)
        cpu_before, started = cpu_seconds(process.pid), time.monotonic()
        for number in range(live_runs):
            client.request("POST", f"/api/v1/dags/{LIVE}/dagRuns", {"dag_run_id": f"live_{number}", "conf": {}})

        def finished():
            body = json.loads(client.request("GET", f"/api/v1/dags/{LIVE}/dagRuns?state=success&limit=1")[1])
            return body["total_entries"] == live_runs

        wait_until(f"{live_runs} runs to succeed", finished, 600, process, log)
        # The last ends reach the followers within a second or two.
        expected = live_runs * 5 * 2
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and min(len(f.seen) for f in clients) < expected:
            time.sleep(0.1)
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(process.pid) - cpu_before
        for follower in clients:
            follower.stop = True
        delays = [delay for follower in clients for delay in follower.delays]
        complete = sum(1 for follower in clients if len(follower.seen) >= expected)
        return {
            "dags": dags,
            "tasks_per_dag": tasks,
            "runs": counts["runs"],
            "task_instances": counts["tis"],
            "pages": results,
            "live": {
                "followers": followers,
                "runs": live_runs,
                "followers_told_every_change": complete,
                "changes_per_follower": expected,
                "delay_ms": {"p50": round(percentile(delays, 0.5), 1), "p95": round(percentile(delays, 0.95), 1),
                             "max": round(max(delays, default=0), 1)},
                "seconds": round(elapsed, 1),
                "server_cpu_percent": round(cpu / elapsed * 100, 1),
                "server_rss_mb_before": round(rss_before, 1),
                "server_rss_mb_after": round(rss_mb(process.pid), 1),
                "server_peak_rss_mb": round(peak_rss_mb(process.pid), 1),
            },
        }


def psql_counts(url):
    output = subprocess.run(["psql", url, "-qAtc", "SELECT (SELECT count(*) FROM dag_run), (SELECT count(*) FROM task_instance)"],
                            check=True, capture_output=True, text=True).stdout.strip()
    runs, tis = output.split("|")
    return {"runs": int(runs), "tis": int(tis)}
