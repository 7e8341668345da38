#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""flowstat benchmarks (`make bench`): sets up its own load on this machine, measures the
agent against like-for-like baselines in the same invocation, and prints markdown tables.
Needs root. Stdlib only; `scripts/install-deps.sh bench` (run by `make bench`) installs
what it builds and runs: gcc, g++ and libdouble-conversion for the C programs, and the
seed's collector (pyroute2 0.7.8's ss2, with psutil) in .venv-bench/.

  scripts/bench.py [--flows 10000,40000] [--runs 5] [--churn-seconds 5] [--binary PATH]
  scripts/bench.py --inet-diag-table [--flows 10000] [--runs 15]
  scripts/bench.py --flows "" [--runs 5]      (churn only)

N counts flows as the agent and `ss -tin` see them: one per socket end. Every load
connection here has both ends on this host, so N flows are N/2 loopback connections
(127.2.0.S servers, 127.1.C.x clients), spread over processes of at most 5,000
connections each (one process may hold 20,000 files).

Before it times anything at a given N, the bench checks that the agent sees all N flows
(its tcp_flows gauge) and fails if not; every baseline checks its flow count too.

Every figure is the median over --runs runs, with the min-max over the runs beside it.
In each run every side (the agent in each configuration, ss -tin, the in-process
inet_diag dump, the C encoding floor, the seed's collector) is measured once, in an
order that changes from run to run (reversed every other run, rotated every two), each
warmed the same way (--warmup untimed passes) and then timed over --samples passes whose
median is the run's figure. Agents started for a run are stopped, and their maps seen gone
from the kernel, before the next side runs.

Everything it starts (load processes, agents) is ended on exit, and
kernel.bpf_stats_enabled is restored; the agent's BPF programs are links owned by its
process, so they go with it.
"""
import argparse
import atexit
import ctypes
import gzip
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CONNS_PER_PROCESS = 5000
AGENT_PORT = 18020
FLOW_PORT_BASE = 19100
CHURN_PORT = 19001
SS2 = os.path.join(ROOT, ".venv-bench", "bin", "ss2")
DIAG_NETNS = "flowstat-bench-diag"

children = []          # every process we started, ended at exit
restore_sysctls = {}   # sysctl path -> original value


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def fail(msg):
    """A check failed: no figure is printed for a bench that did not measure what it says."""
    raise SystemExit(f"bench: FAILED: {msg}")


def cleanup():
    for proc in reversed(children):
        if proc.poll() is None:
            try:
                if proc.stdin:
                    proc.stdin.close()
            except OSError:
                pass
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for proc in children:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    children.clear()
    for path, value in restore_sysctls.items():
        with open(path, "w") as f:
            f.write(value)
    restore_sysctls.clear()


def set_sysctl(name, value):
    path = "/proc/sys/" + name.replace(".", "/")
    with open(path) as f:
        old = f.read().strip()
    restore_sysctls.setdefault(path, old)
    with open(path, "w") as f:
        f.write(str(value))


def median(values):
    return statistics.median(values) if values else float("nan")


def spread(values, fmt, unit=""):
    """median (min–max) of one figure over the runs, e.g. "3.3 (3.2–3.5) ms"."""
    values = [v for v in values if v is not None]
    unit = " " + unit if unit and unit not in ("x", "%", "/s") else unit
    if not values:
        return "n/a"
    if len(values) == 1:
        return fmt(values[0]) + unit
    return f"{fmt(median(values))} ({fmt(min(values))}–{fmt(max(values))}){unit}"


def f1(x):
    return f"{x:.1f}"


def f0(x):
    return f"{x:,.0f}"


def f2(x):
    return f"{x:.2f}"


def ms(values):
    return spread([v * 1e3 if v is not None else None for v in values], f1, "ms")


def ratio(values):
    return spread(values, lambda x: f"{x:.2f}", "x")


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ---------------------------------------------------------------- load

def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def spawn(args, **kw):
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            preexec_fn=raise_nofile, **kw)
    children.append(proc)
    return proc


def established_count():
    out = subprocess.run(["ss", "-Htn", "state", "established"], capture_output=True, text=True).stdout
    return out.count("\n")


def time_wait_count():
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                fields = line.split()
                return int(fields[fields.index("tw") + 1])
    return 0


class FlowLoad:
    """N flows: N/2 loopback connections over several server and client processes."""

    def __init__(self, flows, period):
        conns = flows // 2
        nproc = max(1, -(-conns // CONNS_PER_PROCESS))
        self.procs = []
        base = established_count()
        servers = []
        for s in range(nproc):
            addr, port = f"127.2.0.{s + 1}", FLOW_PORT_BASE + s
            proc = spawn([sys.executable, os.path.join(HERE, "bench_flows.py"), "server", addr, str(port)])
            servers.append((proc, addr, port))
        for proc, _, _ in servers:
            if proc.stdout.readline().strip() != "ready":
                fail("a flow server did not start")
        clients = []
        for s, (_, addr, port) in enumerate(servers):
            count = conns // nproc + (1 if s < conns % nproc else 0)
            proc = spawn([sys.executable, os.path.join(HERE, "bench_flows.py"), "client",
                          f"127.1.{s + 1}", addr, str(port), str(count), str(period)])
            clients.append(proc)
        for proc in clients:
            if proc.stdout.readline().strip() != "connected":
                fail("a flow client did not connect")
        self.procs = [p for p, _, _ in servers] + clients
        deadline = time.monotonic() + 30
        while established_count() - base < 2 * conns and time.monotonic() < deadline:
            time.sleep(0.2)
        self.flows = established_count()
        if self.flows - base < 2 * conns:
            fail(f"only {self.flows - base} of the {2 * conns} load flows are established")
        log(f"load: {2 * conns} flow ends over {len(self.procs)} processes "
            f"({self.flows} established TCP sockets on the host)")

    def stop(self):
        for proc in self.procs:
            proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            children.remove(proc)
        deadline = time.monotonic() + 20
        while established_count() > 100 and time.monotonic() < deadline:
            time.sleep(0.2)


# ---------------------------------------------------------------- agent

def dechunk(data):
    """The body of an HTTP/1.1 chunked transfer."""
    pieces, at = [], 0
    while True:
        line_end = data.index(b"\r\n", at)
        size = int(data[at:line_end].split(b";")[0], 16)
        if size == 0:
            return b"".join(pieces)
        pieces.append(data[line_end + 2:line_end + 2 + size])
        at = line_end + 2 + size + 2


class AgentRefused(Exception):
    """The agent exited at start-up (e.g. a --bpf.mode the kernel refuses), with its message."""


def drop_to_nobody():
    raise_nofile()
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


class Agent:
    # The response buffer of get(), shared by every agent of the run: grown, never shrunk.
    buffer = bytearray(64 << 20)

    def __init__(self, binary, extra=(), source="bpf", unprivileged=False, env=None):
        self.port = AGENT_PORT
        start = time.perf_counter()
        self.proc = subprocess.Popen(
            # --source bpf: a BPF failure must stop the bench, not measure the inet_diag fallback.
            [binary, "serve", "--source", source, "--web.listen-address", f"127.0.0.1:{self.port}",
             "--log.level", "warning", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            preexec_fn=drop_to_nobody if unprivileged else None, env=env)
        children.append(self.proc)
        deadline = start + 30
        while True:
            if self.proc.poll() is not None:
                children.remove(self.proc)
                raise AgentRefused(self.proc.stderr.read().strip().splitlines()[-1:])
            try:
                status, body, _ = self.get("/metrics")
                if status == 200:
                    break
            except OSError:
                pass
            if time.perf_counter() > deadline:
                fail("the agent did not serve /metrics within 30 s")
            time.sleep(0.005)
        self.startup = time.perf_counter() - start
        self.first_body = body
        self.map_ids = owned_ids(self.proc.pid, "map_id") if source == "bpf" else set()

    def get(self, path, headers=None):
        """One GET, timed to the response's last byte by a client that costs no more than a
        copy into one buffer (as `ss -tin`, timed, writes to /dev/null): a plain socket read
        into a buffer kept between requests until the agent closes the connection; the
        chunked framing is removed after the clock stops. http.client, reading a 58 MiB
        exposition piece by piece in Python, added about 85 ms at 40,000 flows."""
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nConnection: close\r\n"
        request += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items()) + "\r\n"
        with socket.create_connection(("127.0.0.1", self.port), timeout=60) as sock:
            start = time.perf_counter()
            sock.sendall(request.encode())
            length, head_end, self.last_ttfb = 0, -1, None
            while True:
                if length == len(Agent.buffer):
                    Agent.buffer.extend(bytes(len(Agent.buffer)))
                got = sock.recv_into(memoryview(Agent.buffer)[length:], 1 << 20)
                if got == 0:
                    break
                length += got
                if head_end < 0:
                    head_end = Agent.buffer.find(b"\r\n\r\n", 0, length)
                if self.last_ttfb is None and 0 <= head_end < length - 4:
                    self.last_ttfb = time.perf_counter() - start  # the first body byte arrived
            elapsed = time.perf_counter() - start
        if head_end < 0:
            raise OSError("the agent closed the connection before a whole response head")
        head = bytes(Agent.buffer[:head_end]).decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        fields = {line.split(":", 1)[0].strip().lower(): line.split(":", 1)[1].strip() for line in head[1:]}
        body = bytes(Agent.buffer[head_end + 4:length])
        if fields.get("transfer-encoding") == "chunked":
            body = dechunk(body)
        if self.last_ttfb is None:
            self.last_ttfb = elapsed
        return status, body, elapsed

    def scrape(self, headers=None):
        status, body, elapsed = self.get("/metrics", headers)
        if status != 200:
            fail(f"/metrics answered {status}")
        return body, elapsed

    def check_flows(self, n):
        """Fails unless the agent's tcp_flows counts at least the n load flows (it may see
        more: other flows on the host). Returns the count and the body."""
        deadline = time.monotonic() + 10
        while True:
            body = maybe_gunzip(self.scrape()[0])
            seen = metric_value(body, "tcp_flows") or 0
            if seen >= n:
                return int(seen), body
            if time.monotonic() > deadline:
                fail(f"the agent ({' '.join(self.proc.args[2:])}) sees {seen:.0f} flows, not the {n} of the load")
            time.sleep(0.5)

    def status_kib(self, field):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        children.remove(self.proc)
        # The next side must not run beside this agent's maps (or its socket storage, freed
        # with its storage map): wait until the kernel has freed them.
        deadline = time.monotonic() + 60
        while self.map_ids:
            left = self.map_ids & {m["id"] for m in bpftool_json("map", "show")}
            if not left:
                break
            if time.monotonic() > deadline:
                fail(f"the stopped agent's maps {sorted(left)} are still in the kernel after 60 s")
            time.sleep(0.1)


def bpftool_json(*args):
    out = subprocess.run(["bpftool", "-j", *args], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def owned_ids(pid, field):
    """IDs of the BPF programs (field "prog_id") or maps ("map_id") that the process holds
    descriptors of, links included: from /proc/PID/fdinfo, since Debian's bpftool has no
    "pids" column."""
    ids = set()
    fddir = f"/proc/{pid}/fdinfo"
    for fd in os.listdir(fddir):
        try:
            with open(os.path.join(fddir, fd)) as f:
                for line in f:
                    if line.startswith(field + ":"):
                        ids.add(int(line.split()[1]))
        except OSError:
            pass
    return ids


def prog_stats(pid):
    ids = owned_ids(pid, "prog_id")
    return {p["id"]: p for p in bpftool_json("prog", "show") if p["id"] in ids}


def hook_costs(before, after):
    """Mean ns per run and runs of each program over the window between two prog_stats."""
    costs = {}
    for pid_, prog in after.items():
        old = before.get(pid_, {})
        runs = prog.get("run_cnt", 0) - old.get("run_cnt", 0)
        ns = prog.get("run_time_ns", 0) - old.get("run_time_ns", 0)
        name = f'{prog.get("name", "?")} ({prog.get("type", "?")})'
        if runs > 0:
            costs[name] = (ns / runs, runs)
    return costs


def series_stats(body):
    series = flows = 0
    for line in body.split(b"\n"):
        if line and not line.startswith(b"#"):
            series += 1
            if line.startswith(b"tcp_flows "):
                flows = int(float(line.split()[1]))
    return series, flows


def metric_value(body, name):
    for line in body.split(b"\n"):
        if line.startswith(name.encode() + b" ") or line.startswith(name.encode() + b"{"):
            return float(line.rsplit(None, 1)[1])
    return None


def maybe_gunzip(body):
    return gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body


def snapshot_mode(body):
    """The mode label of flowstat_source_info: which snapshot mode the agent runs."""
    match = re.search(rb'flowstat_source_info\{[^}]*mode="([a-z_]+)"', body)
    return match.group(1).decode() if match else "unknown"


def attached_hooks(body):
    """hook/variant of every flowstat_source_info series."""
    return [f"{h.decode()}/{v.decode()}" for h, v in
            re.findall(rb'flowstat_source_info\{[^}]*hook="([a-z_]+)",variant="([a-z_]+)"', body)]


def socket_option_memory():
    """Sum of the option memory (ss -m "o", where the kernel charges socket storage) of the
    established sockets, and how many there are."""
    out = subprocess.run(["ss", "-Htmn", "state", "established"], capture_output=True, text=True).stdout
    values = [int(part[1:]) for part in out.replace("(", ",").replace(")", ",").split(",")
              if part.startswith("o") and part[1:].isdigit()]
    return sum(values), len(values)


# ---------------------------------------------------------------- sides of a run

class Results:
    """Every figure of one N: name -> one value per run."""

    def __init__(self):
        self.values = {}
        self.notes = {}

    def add(self, name, value):
        self.values.setdefault(name, []).append(value)

    def get(self, name):
        return self.values.get(name, [])


def run_agent(binary, n, args, extra=(), source="bpf", headers=None, hooks=False, maps=False,
              omem_baseline=None, unprivileged=False):
    """One agent for one run: start, check it sees the N flows, --warmup scrapes, then
    --samples timed ones. Returns its figures (medians over the samples)."""
    agent = Agent(binary, extra, source, unprivileged)
    out = {"startup": agent.startup}
    try:
        out["seen"], _ = agent.check_flows(n)
        for _ in range(args.warmup):
            agent.scrape(headers)
        walls, ttfbs, snaps, encodes, body, raw = [], [], [], [], b"", b""
        for i in range(args.samples + 1):
            raw, elapsed = agent.scrape(headers)
            body = maybe_gunzip(raw)
            if i < args.samples:
                walls.append(elapsed)
                ttfbs.append(agent.last_ttfb)
            if i > 0:
                # Self-metrics describe the previous scrape: the timed one before this.
                snap = metric_value(body, "flowstat_snapshot_duration_seconds")
                whole = metric_value(body, "flowstat_scrape_duration_seconds")
                series, _ = series_stats(body)
                snaps.append(snap)
                encodes.append((whole - snap) / series)
        out.update(wall=median(walls), ttfb=median(ttfbs), snapshot=median(snaps), encode=median(encodes), body=body,
                   wire=len(raw), gzip=raw[:2] == b"\x1f\x8b", series=series_stats(body)[0],
                   mode=snapshot_mode(body), hooks=attached_hooks(body),
                   rss=agent.status_kib("VmRSS") / 1024, hwm=agent.status_kib("VmHWM") / 1024)
        if maps:
            live = out["mode"].startswith("live")
            owned = owned_ids(agent.proc.pid, "map_id")
            all_maps = [m for m in bpftool_json("map", "show") if m["id"] in owned]
            flow_maps = [m for m in all_maps if m.get("name") == ("snapshot" if live else "flows")]
            omem, sockets = socket_option_memory()
            out["map"] = flow_maps[0] if flow_maps else None
            out["maps_total"] = sum(m.get("bytes_memlock", 0) for m in all_maps)
            out["storage"] = omem - omem_baseline[0]
            out["entries"] = metric_value(body, "flowstat_map_entries") or out["seen"]
        if hooks:
            # The kernel's own BPF statistics over a window of load traffic and one scrape a second.
            set_sysctl("kernel.bpf_stats_enabled", 1)
            before = prog_stats(agent.proc.pid)
            window_end = time.monotonic() + max(5.0, args.period * 2)
            while time.monotonic() < window_end:
                agent.scrape()
                time.sleep(1)
            after = prog_stats(agent.proc.pid)
            set_sysctl("kernel.bpf_stats_enabled", 0)
            out["costs"] = hook_costs(before, after)
    finally:
        agent.stop()
    if omem_baseline is not None:
        wait_storage_freed(omem_baseline)
    return out


def wait_storage_freed(baseline):
    """Waits until the load's sockets carry no more option memory than before any agent ran
    (the kernel frees a stopped agent's socket storage after its map, asynchronously)."""
    deadline = time.monotonic() + 60
    while True:
        omem, _ = socket_option_memory()
        if omem <= baseline[0] + 64 * max(1, baseline[1] // 1000):
            return
        if time.monotonic() > deadline:
            fail(f"socket storage of a stopped agent not freed after 60 s ({omem - baseline[0]} B left)")
        time.sleep(0.2)


def time_ss(n, args):
    """A whole `ss -tin` run (fork, exec, dump, text to /dev/null), warmed like the agent."""
    for _ in range(args.warmup):
        out = subprocess.run(["ss", "-tin"], capture_output=True, text=True, check=True).stdout
        seen = sum(1 for line in out.splitlines() if line.startswith("ESTAB"))
        if seen < n:
            fail(f"ss -tin printed {seen} established flows, not the {n} of the load")
    times = []
    for _ in range(args.samples):
        start = time.perf_counter()
        subprocess.run(["ss", "-tin"], stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return median(times)


def time_diag_dump(exe, n, args):
    """flowstat's inet_diag dump of this namespace, in process (bench_diag_dump.c)."""
    out = subprocess.run([exe, str(args.warmup), str(args.samples)], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    if result["flows"] < n:
        fail(f"the inet_diag dump read {result['flows']} flows, not the {n} of the load")
    return median(result["ns"]) / 1e9, result["flows"]


def time_encode_floor(exe, body, tmp, args):
    """The C floor over the per-flow series of an exposition the agent served, per series."""
    path = os.path.join(tmp, "exposition.prom")
    with open(path, "wb") as f:
        f.write(body)
    out = subprocess.run([exe, path, str(args.samples)], capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"the C encoding floor does not format the agent's series: {out.stderr.strip()}")
    r = json.loads(out.stdout)
    return {"tight": median(r["tight_ns"]) / r["series"], "snprintf": median(r["snprintf_ns"]) / r["series"],
            "sort": median(r["sort_ns"]) / r["flows"], "series": r["series"], "match_snprintf": r["match_snprintf"]}


def time_ss2(n):
    """The seed's collector, once: seconds and peak RSS in MiB, or the reason it failed."""
    if not os.access(SS2, os.X_OK):
        return {"error": "not installed (scripts/install-deps.sh bench)"}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen([SS2, "--tcp", "--process"], stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace").strip().splitlines()[-1:]
            return {"error": f"exit status {code}: {' '.join(tail)}"}
        out.seek(0)
        try:
            flows = len(json.load(out)["TCP"]["flows"])
        except (ValueError, KeyError, TypeError) as e:
            return {"error": f"output not the expected JSON ({e})"}
    if flows < n * 0.95:
        return {"error": f"printed {flows} flows, not about {n}"}
    return {"time": elapsed, "rss": usage.ru_maxrss / 1024, "flows": flows}


SNAPSHOT_MODES = ("live_storage_iter", "live_tcp_iter", "event")


def order_for_run(sides, run):
    """Reversed every other run, rotated by one every two: each side leads and trails."""
    order = list(sides) if run % 2 == 0 else list(reversed(sides))
    k = (run // 2) % len(order)
    return order[k:] + order[:k]


def measure_flows(binary, tools, tmp, n, args, tables):
    log(f"N = {n}: starting the load (load average {loadavg()})")
    load = FlowLoad(n, args.period)
    res = Results()
    try:
        time.sleep(2)  # let the connect burst settle
        omem_baseline = socket_option_memory()
        # Before any timing: the agent must see all N flows, and tells the mode it runs in.
        check = run_agent(binary, n, args, ["--cardinality.max-flows", "0"], maps=False)
        mode = check["mode"]
        latest = {"body": check["body"]}
        print(f"N = {n}: the agent saw {check['seen']} flows (load: {n}); it runs {mode}; "
              f"hooks attached: {', '.join(check['hooks'])}", flush=True)
        wait_storage_freed(omem_baseline)

        refused = {}

        def agent_main():
            r = run_agent(binary, n, args, ["--cardinality.max-flows", "0"], hooks=True, maps=True,
                          omem_baseline=omem_baseline)
            if r["mode"] != mode:
                fail(f"the agent ran {r['mode']} in one run and {mode} in another")
            latest["body"] = r["body"]
            for key in ("wall", "ttfb", "snapshot", "encode", "rss", "hwm", "startup", "series", "seen"):
                res.add(f"main.{key}", r[key])
            res.add("main.size", len(r["body"]))
            m = r["map"]
            if m:
                per_live = (m["bytes_memlock"] + r["storage"]) / r["seen"]
                res.add("map.per_live", per_live)
                res.add("map.per_slot", m["bytes_memlock"] / m["max_entries"])
                res.add("map.struct", m["bytes_memlock"])
                res.add("map.capacity", m["max_entries"])
                res.add("map.storage_per_flow", r["storage"] / r["seen"])
                res.add("map.all_per_live", (r["maps_total"] + r["storage"]) / r["seen"])
                res.notes["map.name"] = m["name"]
            for name, (ns, runs) in r["costs"].items():
                res.add(f"hook.{name}", (ns, runs))

        def agent_config(key, extra, **kw):
            def side():
                if key in refused:
                    return
                try:
                    r = run_agent(binary, n, args, extra, omem_baseline=omem_baseline, **kw)
                except AgentRefused as e:
                    refused[key] = " ".join(e.args[0])
                    return
                for field in ("wall", "snapshot", "rss", "hwm", "startup", "wire", "series", "seen"):
                    res.add(f"{key}.{field}", r[field])
                res.notes[f"{key}.gzip"] = r["gzip"]
            return side

        def ss_side():
            res.add("ss", time_ss(n, args))

        def diag_side():
            t, flows = time_diag_dump(tools["diag"], n, args)
            res.add("diag", t)
            res.add("diag.flows", flows)

        def floor_side():
            f = time_encode_floor(tools["floor"], latest["body"], tmp, args)
            for k, v in f.items():
                res.add(f"floor.{k}", v)

        def ss2_side():
            r = time_ss2(n)
            if "error" in r:
                res.add("ss2.error", r["error"])
            else:
                for k, v in r.items():
                    res.add(f"ss2.{k}", v)

        sides = {
            "agent": agent_main,
            "norefresh": agent_config("norefresh", ["--cardinality.max-flows", "0", "--no-bpf.refresh"]),
            "capped": agent_config("capped", [], headers={"Accept-Encoding": "gzip"}),
            "inet_diag": agent_config("inet_diag", ["--cardinality.max-flows", "0"], source="inet_diag"),
            "ss": ss_side,
            "diag": diag_side,
            "floor": floor_side,
        }
        for forced in SNAPSHOT_MODES:
            if forced != mode:
                sides[f"mode.{forced}"] = agent_config(f"mode.{forced}",
                                                       ["--cardinality.max-flows", "0", "--bpf.mode", forced])
        if not args.no_ss2:
            sides["ss2"] = ss2_side

        for run in range(args.runs):
            order = order_for_run(list(sides), run)
            log(f"N = {n}, run {run + 1}/{args.runs}: {', '.join(order)} (load average {loadavg()})")
            for name in order:
                sides[name]()
    finally:
        load.stop()
    log(f"N = {n}: done (load average {loadavg()})")
    tables.append((n, mode, res, refused))


def flow_rows(n, mode, res, refused):
    g = res.get
    runs = len(g("ss"))

    def per_run(a, b, f):
        return [f(x, y) for x, y in zip(g(a), g(b))]

    rows = []
    diag_flows = spread(g("diag.flows"), f0)
    rows.append((f"snapshot: read all flows from the kernel, in process (agent, {mode})", n,
                 ms(g("main.snapshot")), f"inet_diag dump, in process (C) {ms(g('diag'))}",
                 ratio(per_run("diag", "main.snapshot", lambda d, s: d / s)), "(none set: see text)"))
    for key, label in [("norefresh", "--no-bpf.refresh (batch map read)")] + \
            [(f"mode.{m}", f"--bpf.mode {m}") for m in SNAPSHOT_MODES if m != mode]:
        if key in refused:
            rows.append((f"snapshot, {label}", n, "refused by this kernel", refused[key], "", ""))
            continue
        rows.append((f"snapshot, {label}", n, ms(g(f"{key}.snapshot")),
                     f"inet_diag dump (C) {ms(g('diag'))}",
                     ratio(per_run("diag", f"{key}.snapshot", lambda d, s: d / s)), ""))
    rows.append(("snapshot, --source inet_diag (the agent's fallback: dump and conversion, every namespace)", n,
                 ms(g("inet_diag.snapshot")), f"inet_diag dump (C) {ms(g('diag'))}",
                 ratio(per_run("diag", "inet_diag.snapshot", lambda d, s: d / s)), ""))
    rows.append(("full scrape, cap off: GET /metrics (wall)", n, ms(g("main.wall")),
                 f"ss -tin (whole run) {ms(g('ss'))}",
                 ratio(per_run("ss", "main.wall", lambda a, b: a / b)), "≥ 4x at 40,000"))
    for key, label in [("norefresh", "--no-bpf.refresh")] + \
            [(f"mode.{m}", f"--bpf.mode {m}") for m in SNAPSHOT_MODES if m != mode] + \
            [("inet_diag", "--source inet_diag")]:
        if key in refused or not g(f"{key}.wall"):
            continue
        rows.append((f"full scrape, cap off, {label}", n, ms(g(f"{key}.wall")),
                     f"ss -tin {ms(g('ss'))}",
                     ratio(per_run("ss", f"{key}.wall", lambda a, b: a / b)), "≥ 4x at 40,000"))
    rows.append(("full scrape, cap off: time to the first body byte (streamed)", n, ms(g("main.ttfb")),
                 f"whole scrape {ms(g('main.wall'))}",
                 ratio(per_run("main.wall", "main.ttfb", lambda w, t: w / t)), ""))
    rows.append(("scrape size / series / flows seen (cap off)", n,
                 f"{spread([x / 2**20 for x in g('main.size')], f1, 'MiB')} / "
                 f"{spread(g('main.series'), f0)} / {spread(g('main.seen'), f0)}",
                 f"inet_diag dump read {diag_flows} flows", "", ""))
    rows.append(("ns per series, encoding (agent: scrape less snapshot, in process)", n,
                 spread([x * 1e9 for x in g("main.encode")], f0, "ns"),
                 f"C floor {spread(g('floor.tight'), f0, 'ns')} "
                 f"(snprintf {spread(g('floor.snprintf'), f0, 'ns')}; "
                 f"sorting {spread(g('floor.sort'), f0, 'ns')} per flow)",
                 ratio(per_run("main.encode", "floor.tight", lambda a, f: a * 1e9 / f)), "≤ 1.5x"))
    gz = "gzip" if res.notes.get("capped.gzip") else "no gzip"
    rows.append((f"capped scrape (default cap 2,000, {gz})", n, ms(g("capped.wall")),
                 f"{spread([x / 1024 for x in g('capped.wire')], f0, 'KiB')} on the wire, "
                 f"{spread(g('capped.series'), f0)} series", "", "< 20 ms at 40,000"))
    rows.append(("agent RSS after scrapes, cap off (peak)", n,
                 f"{spread(g('main.rss'), f1, 'MiB')}; peak {spread(g('main.hwm'), f1, 'MiB')}", "", "", "≤ 64 MiB at 40,000"))
    rows.append(("agent RSS after scrapes, default cap (peak)", n,
                 f"{spread(g('capped.rss'), f1, 'MiB')}; peak {spread(g('capped.hwm'), f1, 'MiB')}", "", "", "≤ 64 MiB at 40,000"))
    if g("map.per_live"):
        # live_tcp_iter keeps a one-slot array: its records stream through the iterator.
        structure = ("no flow structure (records stream through the iterator)" if max(g("map.capacity")) <= 1 else
                     f"{res.notes['map.name']} {spread([x / 2**20 for x in g('map.struct')], f1, 'MiB')} for "
                     f"{spread(g('map.capacity'), f0)} entries ({spread(g('map.per_slot'), f0, 'B')} per slot)")
        rows.append(("kernel bytes per live flow: flow structure + socket storage", n, spread(g("map.per_live"), f0, "B"),
                     f"{structure}; socket storage "
                     f"{spread(g('map.storage_per_flow'), f0, 'B')} per flow; every map of the agent + storage "
                     f"{spread(g('map.all_per_live'), f0, 'B')} per flow", "", "≤ 256 B"))
    starts = g("main.startup") + g("capped.startup")
    rows.append(("start-up to first /metrics", n, spread([x * 1e3 for x in starts], f0, "ms"), "", "", "< 1 s"))
    errors = g("ss2.error")
    if g("ss2.time"):
        note = f"; {len(errors)} of {runs} runs failed: {errors[0]}" if errors else ""
        rows.append(("seed collector: ss2 --tcp --process (time, peak RSS, flows printed)", n, "",
                     f"{spread(g('ss2.time'), lambda x: f'{x:.2f}', 's')}, peak RSS {spread(g('ss2.rss'), f0, 'MiB')}, "
                     f"{spread(g('ss2.flows'), f0)} flows{note}",
                     spread(per_run("ss2.time", "capped.wall", lambda a, c: a / c), f0, "x") +
                     " vs capped scrape", ""))
    elif errors:
        rows.append(("seed collector: ss2 --tcp --process", n, "", f"FAILED in {len(errors)} of {runs} runs: "
                     f"{errors[0]}", "", ""))
    for key in sorted(k for k in res.values if k.startswith("hook.")):
        name = key[len("hook."):]
        costs = g(key)
        target = "" if "iter" in name else "≤ 100 ns"
        rows.append((f"hook cost: {name}, {spread([r for _, r in costs], f0)} runs per window",
                     f"flows, N = {n}", spread([c for c, _ in costs], f0, "ns"), "", "", target))
    return rows


# ---------------------------------------------------------------- churn

def build_c(tmp, name, sources, flags=()):
    exe = os.path.join(tmp, name)
    subprocess.run(["gcc", "-O2", "-o", exe, *flags, *sources, "-lm"], check=True)
    return exe


def build_floor(tmp):
    """scripts/bench_encode_floor.c with its shortest-double routine (bench_shortest.cc)."""
    c_obj, cc_obj, exe = (os.path.join(tmp, x) for x in ("floor_c.o", "floor_cc.o", "bench_encode_floor"))
    subprocess.run(["gcc", "-O2", "-c", "-o", c_obj, os.path.join(HERE, "bench_encode_floor.c")], check=True)
    subprocess.run(["g++", "-O2", "-c", "-o", cc_obj, os.path.join(HERE, "bench_shortest.cc")], check=True)
    subprocess.run(["g++", "-o", exe, c_obj, cc_obj, "-ldouble-conversion", "-lm"], check=True)
    return exe


class SockopsFloor:
    """scripts/bench_sockops_floor.bpf.c, its programs loaded and pinned; run() puts one on the
    cgroup v2 root for one churn run. Everything is undone at exit, even after a failure."""

    PIN = "/sys/fs/bpf/flowstat_bench_sockops_floor"
    # The program that only turns on flowstat's callbacks, and the one that also keeps a record.
    CALLBACKS, STATE = "bench_sockops_floor", "bench_sockops_state"

    def __init__(self, tmp):
        obj = os.path.join(tmp, "floor.o")
        subprocess.run(["clang", "-O2", "-g", "-target", "bpf", f"-I/usr/include/{platform.machine()}-linux-gnu",
                        "-c", os.path.join(HERE, "bench_sockops_floor.bpf.c"), "-o", obj], check=True)
        self.remove()
        atexit.register(self.remove)
        subprocess.run(["bpftool", "prog", "loadall", obj, self.PIN, "type", "sockops"], check=True)
        with open("/proc/mounts") as mounts:
            self.cgroup = next(line.split()[1] for line in mounts if line.split()[2] == "cgroup2")

    def run(self, exe, seconds, program=CALLBACKS, stats=False):
        """Connections per second with `program` attached; with stats, also its (mean ns per
        run, runs) from the kernel's BPF statistics over the run."""
        pin = os.path.join(self.PIN, program)
        subprocess.run(["bpftool", "cgroup", "attach", self.cgroup, "sock_ops", "pinned", pin], check=True)
        try:
            if stats:
                set_sysctl("kernel.bpf_stats_enabled", 1)
            before = bpftool_json("prog", "show", "pinned", pin)
            rate = churn_once(exe, seconds)
            after = bpftool_json("prog", "show", "pinned", pin)
        finally:
            if stats:
                set_sysctl("kernel.bpf_stats_enabled", 0)
            subprocess.run(["bpftool", "cgroup", "detach", self.cgroup, "sock_ops", "pinned", pin], check=True)
        if not stats:
            return rate
        runs = after.get("run_cnt", 0) - before.get("run_cnt", 0)
        ns = after.get("run_time_ns", 0) - before.get("run_time_ns", 0)
        return rate, (ns / runs if runs else 0.0, runs)

    def remove(self):
        if os.path.isdir(self.PIN):
            shutil.rmtree(self.PIN)
        elif os.path.exists(self.PIN):
            os.unlink(self.PIN)  # one program pinned by an earlier version of the bench


def churn_once(exe, seconds):
    out = subprocess.run([exe, "127.0.9.1", str(CHURN_PORT), str(seconds), str(os.cpu_count() or 2), "127.3.0"],
                         capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    return float(out.strip())


class Scraper(threading.Thread):
    """Scrapes the agent once a second while churn runs, as Prometheus would."""

    def __init__(self, agent):
        super().__init__(daemon=True)
        self.agent, self.stop_event, self.count, self.errors = agent, threading.Event(), 0, 0

    def run(self):
        while not self.stop_event.wait(1.0):
            try:
                self.agent.scrape()
                self.count += 1
            except (OSError, SystemExit):
                self.errors += 1

    def finish(self):
        self.stop_event.set()
        self.join()


def agent_churn(binary, exe, seconds, stats=False):
    agent = Agent(binary)
    try:
        scraper = Scraper(agent)
        scraper.start()
        if stats:
            set_sysctl("kernel.bpf_stats_enabled", 1)
            before = prog_stats(agent.proc.pid)
        rate = churn_once(exe, seconds)
        if stats:
            after = prog_stats(agent.proc.pid)
            set_sysctl("kernel.bpf_stats_enabled", 0)
        scraper.finish()
        if scraper.errors or scraper.count < seconds - 1:
            fail(f"the agent answered {scraper.count} of the scrapes during churn ({scraper.errors} failed)")
        return rate, hook_costs(before, after) if stats else None
    finally:
        agent.stop()


def measure_churn(binary, exe, floor, args):
    log(f"churn: {args.runs} runs of {args.churn_seconds} s without the agent, with each sockops floor "
        "program and with the agent (scraped once a second), in an order rotated every run; then, each run, "
        "one more with the agent and one with the record-keeping floor, the kernel's BPF statistics on, "
        "for the hook costs")
    res = Results()
    variants = {
        "none": lambda: churn_once(exe, args.churn_seconds),
        "floor": lambda: floor.run(exe, args.churn_seconds),
        "state": lambda: floor.run(exe, args.churn_seconds, SockopsFloor.STATE),
        "agent": lambda: agent_churn(binary, exe, args.churn_seconds)[0],
    }
    names = list(variants)
    for run in range(args.runs):
        k = run % len(names)
        order = names[k:] + names[:k]
        log(f"churn run {run + 1}/{args.runs}: {', '.join(order)} (load average {loadavg()})")
        for name in order:
            res.add(name, variants[name]())
            time.sleep(1)
        # BPF time per connection: every program's run time over the connections of that run
        # (the iterators run per scrape, not per connection).
        rate, costs = agent_churn(binary, exe, args.churn_seconds, stats=True)
        for name, (ns, runs) in costs.items():
            res.add(f"hook.{name}", (ns, runs))
        res.add("per_conn.agent", sum(ns * runs for name, (ns, runs) in costs.items() if "iter" not in name)
                / (rate * args.churn_seconds))
        time.sleep(1)
        rate, (ns, runs) = floor.run(exe, args.churn_seconds, SockopsFloor.STATE, stats=True)
        res.add("floor_hook", (ns, runs))
        res.add("per_conn.state", ns * runs / (rate * args.churn_seconds))
        time.sleep(1)
    log(f"churn without the agent: {sorted(round(x) for x in res.get('none'))}; do-nothing sockops: "
        f"{sorted(round(x) for x in res.get('floor'))}; record-keeping sockops: "
        f"{sorted(round(x) for x in res.get('state'))}; with: {sorted(round(x) for x in res.get('agent'))}")
    g = res.get
    rate = lambda v: spread(v, f0, "/s")
    pct = lambda v: spread(v, lambda x: f"{x:+.1f}", "%")
    change = lambda name: pct([(b - a) / a * 100 for a, b in zip(g("none"), g(name))])
    rows = [
        ("churn: connections per second, agent scraped once a second", "-", rate(g("agent")),
         f"no agent {rate(g('none'))}", change("agent"), "≥ -3%"),
        ("churn: a sockops program that only turns on the same callbacks", "-", rate(g("floor")),
         f"no agent {rate(g('none'))}", change("floor"), "(floor of any sockops design)"),
        ("churn: that program keeping a 40-byte record per socket from open to close", "-", rate(g("state")),
         f"no agent {rate(g('none'))}", change("state"), "(floor of any design that times flows)"),
        ("BPF time per connection under churn (every program of the agent but the iterators)", "churn",
         spread([x / 1e3 for x in g("per_conn.agent")], f2, "µs"),
         f"record-keeping floor {spread([x / 1e3 for x in g('per_conn.state')], f2, 'µs')}",
         ratio([a / b for a, b in zip(g("per_conn.agent"), g("per_conn.state"))]), ""),
    ]
    for key in sorted(k for k in res.values if k.startswith("hook.")):
        name = key[len("hook."):]
        costs = g(key)
        rows.append((f"hook cost: {name}, {spread([r for _, r in costs], f0)} runs per run",
                     "churn", spread([c for c, _ in costs], f0, "ns"), "", "", "" if "iter" in name else "≤ 100 ns"))
    floor_costs = g("floor_hook")
    rows.append((f"hook cost: the record-keeping floor (sock_ops), {spread([r for _, r in floor_costs], f0)} runs "
                 "per run", "churn", spread([c for c, _ in floor_costs], f0, "ns"), "", "", "(floor)"))
    return rows


# ---------------------------------------------------------------- where churn's time goes

# Kernel symbols grouped by what they do for flowstat; the rest is TCP and everything else.
PROFILE_GROUPS = [
    ("flowstat's BPF programs (their own instructions)", lambda s: s.startswith("bpf_prog_")),
    ("socket storage (get, create, free)", lambda s: "local_storage" in s or "sk_storage" in s),
    ("BPF helpers and dispatch (trampolines, cgroup sockops, ring buffer, maps)",
     lambda s: s.startswith(("__bpf_", "bpf_", "__cgroup_bpf", "__traceiter", "htab_", "array_map",
                             "__htab", "ringbuf", "__bpf_trace", "bpf_trace", "bpf_ringbuf"))),
    ("memory allocation and RCU frees", lambda s: s.startswith(
        ("kmem_cache", "__kmalloc", "kmalloc", "kfree", "__kfree", "rcu_", "__slab", "___slab", "slab_",
         "__call_rcu", "call_rcu", "kvfree", "bpf_mem_", "unit_alloc", "unit_free", "free_"))),
]


def perf_profile(exe, seconds, binary=None):
    """Kernel-and-user samples of the whole machine (perf record -a) while churn runs, with the
    agent (scraped once a second) or without; returns {symbol: share of samples} and the rate."""
    data = os.path.join(tempfile.gettempdir(), f"flowstat-bench-perf-{os.getpid()}.data")
    agent = Agent(binary) if binary else None
    scraper = Scraper(agent) if agent else None
    try:
        if scraper:
            scraper.start()
        perf = subprocess.Popen(["perf", "record", "-a", "-F", "1999", "-o", data, "--", "sleep", str(seconds)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rate = churn_once(exe, seconds)
        perf.wait()
        if scraper:
            scraper.finish()
    finally:
        if agent:
            agent.stop()
    out = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "symbol",
                          "--percent-limit", "0.01"], capture_output=True, text=True, check=True).stdout
    os.unlink(data)
    shares = {}
    for line in out.splitlines():
        m = re.match(r"\s*([0-9.]+)%\s+\[[k.]\]\s+(\S+)", line)
        if m:
            shares[m.group(2)] = shares.get(m.group(2), 0) + float(m.group(1))
    return shares, rate


def profile_churn(exe, binary, args):
    """Where the agent's cost under churn goes: the machine's profile with and without it."""
    if not shutil.which("perf"):
        raise SystemExit("bench: --profile-churn needs perf (apt-get install linux-perf)")
    log(f"profiling churn for {args.churn_seconds} s without the agent, then with it (perf record -a)")
    without, rate_without = perf_profile(exe, args.churn_seconds)
    time.sleep(1)
    with_agent, rate_with = perf_profile(exe, args.churn_seconds, binary)
    print(f"churn: {rate_without:,.0f} connections/s without the agent, {rate_with:,.0f}/s with it")
    print()
    print("| share of all samples (both cores) | without the agent | with the agent |")
    print("|---|---|---|")
    grouped = set()
    for title, test in PROFILE_GROUPS:
        names = [n for n in set(without) | set(with_agent) if test(n) and n not in grouped]
        grouped.update(names)
        print(f"| {title} | {sum(without.get(n, 0) for n in names):.1f}% | "
              f"{sum(with_agent.get(n, 0) for n in names):.1f}% |")
    print()
    print("| symbol (top 25 with the agent) | without | with |")
    print("|---|---|---|")
    for name in sorted(with_agent, key=with_agent.get, reverse=True)[:25]:
        print(f"| `{name}` | {without.get(name, 0):.2f}% | {with_agent[name]:.2f}% |")


def demangle(names):
    """Swift symbols as Swift writes them (swift demangle), others unchanged."""
    tool = shutil.which("swift-demangle") or shutil.which("swift")
    if not tool or not names:
        return names
    command = [tool] if tool.endswith("swift-demangle") else [tool, "demangle"]
    out = subprocess.run(command + ["--simplified", "--compact"], input="\n".join(names) + "\n",
                         capture_output=True, text=True)
    lines = out.stdout.splitlines()
    return lines if out.returncode == 0 and len(lines) == len(names) else names


def profile_scrapes(binary, n, args):
    """Where one agent's scrapes spend their time at N flows: perf record -g on the agent over
    10 scrapes with the cap off, then 10 with the default cap and gzip; the top symbols of each,
    counting the time of everything they call (children), and by themselves."""
    log(f"N = {n}: starting the load (load average {loadavg()})")
    load = FlowLoad(n, args.period)
    try:
        time.sleep(2)
        for title, extra, headers in (("cap off", ["--cardinality.max-flows", "0"], None),
                                      ("default cap, gzip", [], {"Accept-Encoding": "gzip"})):
            agent = Agent(binary, extra)
            try:
                agent.check_flows(n)
                for _ in range(args.warmup):
                    agent.scrape(headers)
                data = os.path.join(tempfile.gettempdir(), f"flowstat-bench-perf-{os.getpid()}.data")
                perf = subprocess.Popen(["perf", "record", "-g", "-F", "1999", "-p", str(agent.proc.pid),
                                         "-o", data], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.5)
                walls = [agent.scrape(headers)[1] for _ in range(10)]
                perf.send_signal(signal.SIGINT)
                perf.wait()
            finally:
                agent.stop()
            print(f"N = {n}, {title}: 10 scrapes, median {median(walls) * 1e3:.1f} ms "
                  f"(min {min(walls) * 1e3:.1f}, max {max(walls) * 1e3:.1f})")
            print()
            for mode, flag in (("with what it calls", "--children"), ("by itself", "--no-children")):
                out = subprocess.run(["perf", "report", "-i", data, "--stdio", flag, "--sort", "symbol",
                                      "-g", "none", "--percent-limit", "2"],
                                     capture_output=True, text=True, check=True).stdout
                print(f"| symbol ({mode}, of the agent's samples) | share |")
                print("|---|---|")
                found = [m.groups() for m in (re.match(r"\s*([0-9.]+)%(?:\s+[0-9.]+%)?\s+\[[k.]\]\s+(.+?)\s*$", line)
                                              for line in out.splitlines()) if m]
                for (share, _), name in zip(found, demangle([name for _, name in found])):
                    print(f"| `{name.strip()[:110]}` | {share}% |")
                print()
            os.unlink(data)
    finally:
        load.stop()


def memory_ab(binary, n, args):
    """What the agent's fixed mmap threshold (MemoryReturn.swift) costs and saves at N flows:
    --runs alternated rounds of one agent as it runs and one with MALLOC_MMAP_THRESHOLD_ at
    32 MiB (the most glibc's own threshold rises to: blocks below it come from the heap, which
    keeps them), cap off, --warmup then 10 timed scrapes each; RSS after them and at peak."""
    log(f"N = {n}: starting the load (load average {loadavg()})")
    load = FlowLoad(n, args.period)
    variants = (("fixed at 1 MiB (as the agent runs)", None),
                ("heap: MALLOC_MMAP_THRESHOLD_=33554432", dict(os.environ, MALLOC_MMAP_THRESHOLD_="33554432")))
    res = Results()
    try:
        for run in range(args.runs):
            for name, env in (variants if run % 2 == 0 else variants[::-1]):
                agent = Agent(binary, ["--cardinality.max-flows", "0"], env=env)
                try:
                    agent.check_flows(n)
                    for _ in range(args.warmup):
                        agent.scrape()
                    walls = [agent.scrape()[1] for _ in range(10)]
                    res.add(f"{name}.wall", median(walls))
                    res.add(f"{name}.rss", agent.status_kib("VmRSS") / 1024)
                    res.add(f"{name}.hwm", agent.status_kib("VmHWM") / 1024)
                finally:
                    agent.stop()
            log(f"round {run + 1}/{args.runs} done (load average {loadavg()})")
    finally:
        load.stop()
    print(f"| mmap threshold (N = {n}, cap off) | scrape, median of 10 | RSS after scrapes | peak RSS |")
    print("|---|---|---|---|")
    for name, _ in variants:
        print(f"| {name} | {ms(res.get(name + '.wall'))} | {spread(res.get(name + '.rss'), f1, 'MiB')} "
              f"| {spread(res.get(name + '.hwm'), f1, 'MiB')} |")
    fixed, heap = (res.get(name + ".wall") for name, _ in variants)
    print(f"| scrape time, fixed ÷ heap (per round) | {ratio([a / b for a, b in zip(fixed, heap)])} | | |")


# ---------------------------------------------------------------- the inet_diag table

CLONE_NEWNET = 0x40000000


def setns(fd):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def inet_diag_table(binary, tools, args):
    """The inet_diag fallback: N flows in a network namespace of their own (nothing else in
    it), the agent --source inet_diag unprivileged in that namespace (so it reads that one
    namespace only), the C dump and ss -tin there too; every run measures the three in a
    rotated order."""
    subprocess.run(["ip", "netns", "del", DIAG_NETNS], capture_output=True)
    subprocess.run(["ip", "netns", "add", DIAG_NETNS], check=True)
    atexit.register(lambda: subprocess.run(["ip", "netns", "del", DIAG_NETNS], capture_output=True))
    subprocess.run(["ip", "-n", DIAG_NETNS, "link", "set", "lo", "up"], check=True)
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{DIAG_NETNS}", os.O_RDONLY)
    rows = []
    setns(target)
    try:
        for n in [int(x) for x in args.flows.split(",") if x]:
            log(f"inet_diag table, N = {n}: starting the load in namespace {DIAG_NETNS} (load average {loadavg()})")
            load = FlowLoad(n, args.period)
            res = Results()
            try:
                time.sleep(2)

                def scrape_side():
                    r = run_agent(binary, n, args, ["--cardinality.max-flows", "0"], source="inet_diag",
                                  unprivileged=True)
                    res.add("scrape", r["wall"])
                    res.add("snapshot", r["snapshot"])
                    res.add("seen", r["seen"])

                def dump_side():
                    t, flows = time_diag_dump(tools["diag"], n, args)
                    res.add("dump", t)
                    res.add("dump.flows", flows)

                sides = {"dump": dump_side, "scrape": scrape_side, "ss": lambda: res.add("ss", time_ss(n, args))}
                for run in range(args.runs):
                    order = order_for_run(list(sides), run)
                    log(f"inet_diag table, N = {n}, run {run + 1}/{args.runs}: {', '.join(order)}")
                    for name in order:
                        sides[name]()
            finally:
                load.stop()
            g = res.get
            rows += [
                (f"one `fs_diag_dump` (the netlink dump alone, C, in process: scripts/bench_diag_dump.c), "
                 f"{spread(g('dump.flows'), f0)} flows", n, ms(g("dump"))),
                (f"the agent's snapshot, `--source inet_diag` (dump and conversion, its own timer)", n,
                 ms(g("snapshot"))),
                (f"full scrape: GET /metrics, `--source inet_diag`, cap off, unprivileged, "
                 f"{spread(g('seen'), f0)} flows", n, ms(g("scrape"))),
                ("`ss -tin > /dev/null` (whole run)", n, ms(g("ss"))),
                ("ratio ss -tin / dump (per run)", n,
                 ratio([s / d for s, d in zip(g("ss"), g("dump"))])),
                ("ratio ss -tin / full scrape (per run)", n,
                 ratio([s / d for s, d in zip(g("ss"), g("scrape"))])),
            ]
    finally:
        setns(home)
    print("| figure | N | median (min–max over runs) |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


# ---------------------------------------------------------------- main

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flows", default="10000,40000", help="comma-separated N (flows as ss counts them)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2, help="untimed passes of every side before it is timed")
    parser.add_argument("--samples", type=int, default=5, help="timed passes of every side in one run (median)")
    parser.add_argument("--churn-seconds", type=int, default=5)
    parser.add_argument("--period", type=float, default=2.0, help="seconds between two messages on one flow")
    parser.add_argument("--binary", default=os.path.join(ROOT, ".build/release/flowstat"))
    parser.add_argument("--no-churn", action="store_true")
    parser.add_argument("--no-ss2", action="store_true", help="skip the seed's collector (slow at 40,000)")
    parser.add_argument("--inet-diag-table", action="store_true",
                        help="only the README's inet_diag table: the fallback in a namespace of its own")
    parser.add_argument("--profile-churn", action="store_true",
                        help="only where churn's time goes: perf record -a with and without the agent")
    parser.add_argument("--memory-ab", type=int, metavar="N",
                        help="only what the agent's fixed mmap threshold costs and saves at N flows")
    parser.add_argument("--profile-scrape", type=int, metavar="N",
                        help="only where the agent's scrapes spend their time at N flows (perf record -g)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: needs root (BPF, sysctl, bpftool)")
    for tool in ("ss", "bpftool", "gcc", "g++", "clang", "ip"):
        if not shutil.which(tool):
            raise SystemExit(f"bench: {tool} not found")
    if not os.access(args.binary, os.X_OK):
        raise SystemExit(f"bench: no agent at {args.binary}: run make build")

    atexit.register(cleanup)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, f: sys.exit(128 + s))
    raise_nofile()
    set_sysctl("kernel.bpf_stats_enabled", 0)

    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"machine: {os.cpu_count()} cores, {cpu}, {mem:.0f} GiB, Linux {platform.release()}")
    print(f"command: {' '.join(sys.argv)} (median and min–max of {args.runs} runs; each run: "
          f"{args.warmup} untimed then {args.samples} timed passes of every side, median)")
    print(f"load average at start: {loadavg()}", flush=True)

    with tempfile.TemporaryDirectory(prefix="flowstat-bench-") as tmp:
        cflow = os.path.join(ROOT, "Sources", "CFlowStat")
        tools = {
            "diag": build_c(tmp, "bench_diag_dump", [os.path.join(HERE, "bench_diag_dump.c"),
                                                      os.path.join(cflow, "inet_diag.c")],
                            ["-I" + os.path.join(cflow, "include")]),
            "floor": build_floor(tmp),
        }
        if args.inet_diag_table:
            inet_diag_table(args.binary, tools, args)
            print(f"load average at end: {loadavg()}")
            return
        if args.memory_ab:
            memory_ab(args.binary, args.memory_ab, args)
            print(f"load average at end: {loadavg()}")
            return
        if args.profile_scrape:
            profile_scrapes(args.binary, args.profile_scrape, args)
            print(f"load average at end: {loadavg()}")
            return
        if args.profile_churn:
            profile_churn(build_c(tmp, "bench_churn", [os.path.join(HERE, "bench_churn.c")]), args.binary, args)
            print(f"load average at end: {loadavg()}")
            return

        # TIME_WAIT sockets left by an earlier churn run would be walked by ss and iter/tcp.
        deadline = time.monotonic() + 75
        while time_wait_count() > 1000 and time.monotonic() < deadline:
            log(f"waiting for {time_wait_count()} TIME_WAIT sockets to expire")
            time.sleep(5)
        tables, churn_rows = [], []
        # Flows first: churn leaves tens of thousands of TIME_WAIT sockets for a minute,
        # which both ss and the agent's iter/tcp refresh would walk too.
        for n in [int(x) for x in args.flows.split(",") if x]:
            measure_flows(args.binary, tools, tmp, n, args, tables)
        if not args.no_churn:
            churn_rows = measure_churn(args.binary, build_c(tmp, "bench_churn", [os.path.join(HERE, "bench_churn.c")]),
                                       SockopsFloor(tmp), args)

    print(f"load average at end: {loadavg()}")
    print()
    print("| figure | N | flowstat | baseline | ratio | target |")
    print("|---|---|---|---|---|---|")
    rows = [row for n, mode, res, refused in tables for row in flow_rows(n, mode, res, refused)] + churn_rows
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


if __name__ == "__main__":
    main()
