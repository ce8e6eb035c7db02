"""The `api` benchmark (and the orchestrator's idle memory): 1,000 DAGs and 100,000 task instances
in a fresh database behind one `updraft standalone`; p95 of the UI pages and of GET /api/v1/dags,
then the POST dagRuns rate from a few concurrent clients."""
import base64
import contextlib
import concurrent.futures
import http.cookiejar
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

PASSWORD = "bench-admin-password"


def percentile(values, fraction):
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def dag_file(index):
    tasks = "\n".join(
        f"  - id: t{task}\n    operator: empty" + (f"\n    upstream: [t{task - 1}]" if task else "")
        for task in range(10)
    )
    return (f"dag_id: bench_{index:04d}\nschedule: \"{index % 60} 3 * * *\"\nstart_date: 2024-01-01\n"
            f"catchup: false\ntags: [bench, group{index % 10}]\ndefault_args:\n  owner: bench\ntasks:\n{tasks}\n")


def psql(url, sql):
    subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql], check=True, stdout=subprocess.PIPE)


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Client:
    def __init__(self, base):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.basic = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()

    def request(self, method, path, body=None, api=True):
        headers = {"Authorization": self.basic} if api else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        started = time.perf_counter()
        with self.opener.open(request, timeout=30) as response:
            payload = response.read()
        return (time.perf_counter() - started) * 1000, payload

    def login(self):
        _, page = self.request("GET", "/login", api=False)
        fields = {"username": "admin", "password": PASSWORD}
        for name, value in re.findall(rb'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page):
            if name.decode() not in fields:
                fields[name.decode()] = value.decode()
        data = urllib.parse.urlencode(fields).encode()
        request = urllib.request.Request(self.base + "/login", data=data, method="POST")
        with self.opener.open(request, timeout=30) as response:
            response.read()


def wait_until(what, check, timeout, process, log):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"updraft exited while waiting for {what}:\n{log.read_text()[-3000:]}")
        try:
            if check():
                return
        except (urllib.error.URLError, ConnectionError, json.JSONDecodeError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"gave up waiting for {what}")


@contextlib.contextmanager
def standalone(root, profile, name, files):
    """`updraft standalone` on a new database with `files` (file name → YAML) as its DAGs folder;
    yields (process, client, database URL, log path), then stops it and drops the database."""
    binary = root / "target" / ("release" if profile == "release" else "debug") / "updraft"
    server = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
    database = f"bench_{name}_{os.getpid()}_{int(time.time())}"
    psql(os.environ["DATABASE_URL"], f"CREATE DATABASE {database}")
    url = f"{server}/{database}"
    work = Path(tempfile.mkdtemp(prefix=f"updraft-{name}-bench-"))
    folder = work / "dags"
    folder.mkdir()
    for file_name, text in files.items():
        (folder / file_name).write_text(text)
    port = free_port()
    log = work / "updraft.log"
    env = dict(os.environ, DATABASE_URL=url, UPDRAFT_DAGS_FOLDER=str(folder),
               UPDRAFT_BIND=f"127.0.0.1:{port}", UPDRAFT_ADMIN_PASSWORD=PASSWORD, RUST_LOG="warn")
    process = subprocess.Popen([str(binary), "standalone"], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        yield process, Client(f"http://127.0.0.1:{port}"), url, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(work, ignore_errors=True)
        psql(os.environ["DATABASE_URL"], f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def time_pages(client, pages, samples, announce):
    """p50/p95 of `samples` GETs of each page (`name: (path, api)`), after one warm-up."""
    results = {}
    for name, (path, api) in pages.items():
        announce(name)
        client.request("GET", path, api=api)
        timings = [client.request("GET", path, api=api)[0] for _ in range(samples)]
        results[name] = {"path": path, "p50_ms": round(percentile(timings, 0.5), 2),
                         "p95_ms": round(percentile(timings, 0.95), 2), "samples": samples}
    return results


def run(root, profile, smoke, progress):
    dags = 20 if smoke else 1000
    runs_per_dag = 2 if smoke else 10
    samples = 10 if smoke else 200
    triggers = 40 if smoke else 1000
    files = {f"bench_{index:04d}.yaml": dag_file(index) for index in range(dags)}
    with standalone(root, profile, "api", files) as (process, client, url, log):
        progress(f"  api: waiting for {dags} DAGs to load")
        wait_until("the DAGs", lambda: json.loads(client.request("GET", "/api/v1/dags?limit=1")[1])["total_entries"] == dags,
                   120, process, log)
        # Idle: nothing scheduled (new DAGs start paused); let start-up allocations settle.
        time.sleep(3)
        idle_rss = rss_mb(process.pid)
        progress(f"  api: idle RSS {idle_rss:.1f} MB; loading {dags * runs_per_dag * 10:,} finished task instances")
        psql(url, f"""
            INSERT INTO dag_run (dag_id, run_id, run_type, logical_date, data_interval_start, data_interval_end,
                                 state, dag_version_id, start_date, end_date)
            SELECT d.dag_id, 'scheduled__' || n, 'scheduled', timestamptz '2024-01-01' + n * interval '1 day',
                   timestamptz '2024-01-01' + n * interval '1 day', timestamptz '2024-01-02' + n * interval '1 day',
                   'success', d.latest_version_id, now(), now()
              FROM dag d, generate_series(1, {runs_per_dag}) n;
            INSERT INTO task_instance (dag_run_id, dag_id, run_id, task_id, operator, state, try_number,
                                       start_date, end_date, duration)
            SELECT r.id, r.dag_id, r.run_id, 't' || t, 'empty', 'success', 1, now(), now(), 0.01
              FROM dag_run r, generate_series(0, 9) t;
            ANALYZE dag, dag_version, dag_run, task_instance;""")
        client.login()
        pages = {
            "UI DAG list": ("/dags", False),
            "UI DAG page (graph + grid)": ("/dags/bench_0500" if dags > 500 else "/dags/bench_0001", False),
            "UI run page": (f"/dags/bench_0001/runs/scheduled__{runs_per_dag}", False),
            "GET /api/v1/dags": ("/api/v1/dags?limit=100", True),
            "GET /api/v1/dags/~/dagRuns": ("/api/v1/dags/~/dagRuns?limit=100", True),
        }
        results = time_pages(client, pages, samples, lambda name: progress(f"  api: {samples} x {name}"))

        progress(f"  api: {triggers} x POST dagRuns from 8 clients")
        psql(url, "UPDATE dag SET is_paused = TRUE")

        def trigger(number):
            body = {"dag_run_id": f"bench_{number}", "conf": {}}
            return client.request("POST", f"/api/v1/dags/bench_{number % dags:04d}/dagRuns", body)[0]

        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            latencies = list(pool.map(trigger, range(triggers)))
        elapsed = time.perf_counter() - started
        return {
            "dags": dags,
            "task_instances": dags * runs_per_dag * 10,
            "idle_rss_mb": round(idle_rss, 1),
            "pages": results,
            "trigger": {"requests": triggers, "per_s": round(triggers / elapsed, 1),
                        "p50_ms": round(percentile(latencies, 0.5), 2), "p99_ms": round(percentile(latencies, 0.99), 2)},
        }
