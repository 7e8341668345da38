#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""flowstat benchmarks (`make bench`): sets up its own load on this machine, measures
the agent against `ss`, and prints a markdown table. Needs root. Stdlib only.

  scripts/bench.py [--flows 10000,40000] [--runs 5] [--churn-seconds 5] [--binary PATH]

N counts flows as the agent and `ss -tin` see them: one per socket end. Every load
connection here has both ends on this host, so N flows are N/2 loopback connections
(127.2.0.S servers, 127.1.C.x clients), spread over processes of at most 5,000
connections each (one process may hold 20,000 files).

Each figure is the median of --runs runs. Everything it starts (load processes, agents)
is ended on exit, and kernel.bpf_stats_enabled is restored; the agent's BPF programs
are links owned by its process, so they go with it.
"""
import argparse
import atexit
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CONNS_PER_PROCESS = 5000
AGENT_PORT = 18020
FLOW_PORT_BASE = 19100
CHURN_PORT = 19001

children = []          # every process we started, ended at exit
restore_sysctls = {}   # sysctl path -> original value


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


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
                raise SystemExit("bench: a flow server did not start")
        clients = []
        for s, (_, addr, port) in enumerate(servers):
            count = conns // nproc + (1 if s < conns % nproc else 0)
            proc = spawn([sys.executable, os.path.join(HERE, "bench_flows.py"), "client",
                          f"127.1.{s + 1}", addr, str(port), str(count), str(period)])
            clients.append(proc)
        for proc in clients:
            if proc.stdout.readline().strip() != "connected":
                raise SystemExit("bench: a flow client did not connect")
        self.procs = [p for p, _, _ in servers] + clients
        deadline = time.monotonic() + 30
        while established_count() - base < 2 * conns and time.monotonic() < deadline:
            time.sleep(0.2)
        self.flows = established_count()
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

class AgentRefused(Exception):
    """The agent exited at start-up (e.g. a --bpf.mode the kernel refuses), with its message."""


class Agent:
    def __init__(self, binary, extra=()):
        self.port = AGENT_PORT
        start = time.perf_counter()
        self.proc = subprocess.Popen(
            # --source bpf: a BPF failure must stop the bench, not measure the inet_diag fallback.
            [binary, "serve", "--source", "bpf", "--web.listen-address", f"127.0.0.1:{self.port}",
             "--log.level", "warning", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
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
                raise SystemExit("bench: the agent did not serve /metrics within 30 s")
            time.sleep(0.005)
        self.startup = time.perf_counter() - start
        self.first_body = body

    def get(self, path, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            start = time.perf_counter()
            conn.request("GET", path, headers=headers or {})
            resp = conn.getresponse()
            body = resp.read()
            return resp.status, body, time.perf_counter() - start
        finally:
            conn.close()

    def scrape(self):
        status, body, elapsed = self.get("/metrics")
        if status != 200:
            raise SystemExit(f"bench: /metrics answered {status}")
        return body, elapsed

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


def owned_by(obj, pid, field):
    return obj.get("id") in owned_ids(pid, field)


def prog_stats(pid):
    ids = owned_ids(pid, "prog_id")
    return {p["id"]: p for p in bpftool_json("prog", "show") if p["id"] in ids}


def hook_costs(before, after):
    """Mean ns per run of each program over the window between two prog_stats."""
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


# ---------------------------------------------------------------- figures

def socket_option_memory():
    """Mean option memory (ss -m "o", where socket storage is charged) of established sockets."""
    out = subprocess.run(["ss", "-Htmn", "state", "established"], capture_output=True, text=True).stdout
    values = [int(part[1:]) for part in out.replace("(", ",").replace(")", ",").split(",")
              if part.startswith("o") and part[1:].isdigit()]
    return sum(values) / len(values) if values else 0.0


def time_ss(runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(["ss", "-tin"], stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return median(times)


def time_ss2(runs):
    """The seed exporter's collector on the same flows, if installed (pyroute2's ss2):
    median seconds and peak RSS in MiB, or None."""
    ss2 = shutil.which("ss2")
    if not ss2:
        return None
    times, peaks = [], []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.Popen([ss2, "--tcp", "--process"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = status
        times.append(time.perf_counter() - start)
        peaks.append(usage.ru_maxrss / 1024)
    return median(times), max(peaks)


SNAPSHOT_MODES = ("live_storage_iter", "live_tcp_iter", "event")


def snapshot_mode(body):
    """The mode label of flowstat_source_info: which snapshot mode the agent runs."""
    match = re.search(rb'flowstat_source_info\{[^}]*mode="([a-z_]+)"', body)
    return match.group(1).decode() if match else "unknown"


def attached_hooks(body):
    """hook/variant of every flowstat_source_info series."""
    return [f"{h.decode()}/{v.decode()}" for h, v in
            re.findall(rb'flowstat_source_info\{[^}]*hook="([a-z_]+)",variant="([a-z_]+)"', body)]


def scrape_runs(agent, runs, headers=None):
    """Median seconds of `runs` scrapes, the last body, and the median of the snapshot part
    each scrape reports for the one before it."""
    times, snapshots, body = [], [], b""
    for _ in range(runs + 1):
        status, body, elapsed = agent.get("/metrics", headers)
        if status != 200:
            raise SystemExit(f"bench: /metrics answered {status}")
        times.append(elapsed)
        snap = metric_value(maybe_gunzip(body), "flowstat_snapshot_duration_seconds")
        if snap is not None:
            snapshots.append(snap)
    return median(times[1:]), maybe_gunzip(body), median(snapshots), body


def maybe_gunzip(body):
    import gzip
    return gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body


def measure_flows(binary, n, runs, period, rows, hooks_out):
    log(f"N = {n}: starting the load")
    load = FlowLoad(n, period)
    try:
        time.sleep(2)  # let the connect burst settle
        ss_time = time_ss(runs)
        ss2 = time_ss2(min(runs, 3))

        startups = []
        for _ in range(runs - 1):
            agent = Agent(binary)
            startups.append(agent.startup)
            agent.stop()

        # Cap off: every flow in every per-flow family.
        omem_before = socket_option_memory()
        agent = Agent(binary, ["--cardinality.max-flows", "0"])
        startups.append(agent.startup)
        try:
            scrape, body, snapshot, _ = scrape_runs(agent, runs)
            series, flows = series_stats(body)
            rss = agent.status_kib("VmRSS") / 1024
            hwm = agent.status_kib("VmHWM") / 1024

            # Live mode keeps flows in the "snapshot" array, event mode in the "flows" LRU map;
            # either way each tracked socket carries its storage record, charged to the socket.
            mode = snapshot_mode(body)
            live = mode.startswith("live")
            print(f"N = {n}: the agent runs {mode}; hooks attached: {', '.join(attached_hooks(body))}")
            storage = socket_option_memory() - omem_before
            maps = [m for m in bpftool_json("map", "show")
                    if owned_by(m, agent.proc.pid, "map_id") and m.get("name") == ("snapshot" if live else "flows")]
            entries = metric_value(body, "flowstat_map_entries") or flows
            if maps:
                m = maps[0]
                per_cap = m["bytes_memlock"] / m["max_entries"]
                per_entry = m["bytes_memlock"] / entries if entries else float("nan")
                map_desc = (f'{m["name"]} {m["bytes_memlock"] / 2**20:.1f} MiB for {m["max_entries"]} entries; '
                            f'socket storage {storage:.0f} B per socket')
            else:
                per_cap = per_entry = float("nan")
                map_desc = "map not found"

            # Hook cost: the kernel's own BPF statistics over a window of load traffic and scrapes.
            set_sysctl("kernel.bpf_stats_enabled", 1)
            before = prog_stats(agent.proc.pid)
            window_end = time.monotonic() + max(5.0, period * 2)
            while time.monotonic() < window_end:
                agent.scrape()
                time.sleep(1)
            after = prog_stats(agent.proc.pid)
            set_sysctl("kernel.bpf_stats_enabled", 0)
            hooks_out[f"flows, N = {n}"] = hook_costs(before, after)
        finally:
            agent.stop()

        agent = Agent(binary, ["--cardinality.max-flows", "0", "--no-bpf.refresh"])
        try:
            nr_scrape, nr_body, nr_snapshot, _ = scrape_runs(agent, runs)
            nr_series, _ = series_stats(nr_body)
        finally:
            agent.stop()

        # Every other snapshot mode, forced, where the kernel allows it (same flows, same runs).
        other_modes = []
        for forced in SNAPSHOT_MODES:
            if forced == mode:
                continue
            try:
                agent = Agent(binary, ["--cardinality.max-flows", "0", "--bpf.mode", forced])
            except AgentRefused as refused:
                other_modes.append((forced, None, None, " ".join(refused.args[0])))
                continue
            try:
                m_scrape, _, m_snapshot, _ = scrape_runs(agent, runs)
                other_modes.append((forced, m_scrape, m_snapshot, ""))
            finally:
                agent.stop()

        # The default cap (2,000 flows with their own series), gzip asked for as Prometheus does.
        agent = Agent(binary)
        try:
            capped, capped_body, capped_snapshot, wire = scrape_runs(agent, runs, {"Accept-Encoding": "gzip"})
            capped_series, _ = series_stats(capped_body)
            capped_rss = agent.status_kib("VmRSS") / 1024
            capped_hwm = agent.status_kib("VmHWM") / 1024
        finally:
            agent.stop()
    finally:
        load.stop()

    mib = 2 ** 20
    gz = "gzip" if wire[:2] == b"\x1f\x8b" else "no gzip"
    rows += [
        (f"snapshot: read all flows from the kernel (default mode here: {mode})", n, f"{snapshot * 1e3:.1f} ms",
         f"ss -tin {ss_time * 1e3:.1f} ms", f"{ss_time / snapshot:.1f}x", "≥ 20x at 40,000"),
        ("snapshot, --no-bpf.refresh (batch map read)", n, f"{nr_snapshot * 1e3:.1f} ms",
         f"ss -tin {ss_time * 1e3:.1f} ms", f"{ss_time / nr_snapshot:.1f}x", "≥ 20x at 40,000"),
        ("full scrape, cap off: GET /metrics", n, f"{scrape * 1e3:.1f} ms",
         f"ss -tin {ss_time * 1e3:.1f} ms", f"{ss_time / scrape:.2f}x", "≥ 4x at 40,000"),
        ("full scrape, cap off, --no-bpf.refresh", n, f"{nr_scrape * 1e3:.1f} ms",
         f"ss -tin {ss_time * 1e3:.1f} ms", f"{ss_time / nr_scrape:.2f}x", "≥ 4x at 40,000"),
        ("scrape size / series / flows (cap off)", n, f"{len(body) / mib:.1f} MiB / {series} / {flows}", "", "", ""),
        ("ns per series, encoding only (cap off)", n, f"{(scrape - snapshot) / series * 1e9:.0f} ns",
         "C printf loop 68 ns", f"{(scrape - snapshot) / series * 1e9 / 68:.2f}x", "≤ 1.5x (102 ns)"),
        (f"capped scrape (default cap 2,000, {gz})", n, f"{capped * 1e3:.1f} ms",
         f"{len(wire) / 1024:.0f} KiB on the wire, {capped_series} series", "", "< 20 ms at 40,000"),
        ("agent RSS after scrapes (peak), cap off", n, f"{rss:.1f} MiB ({hwm:.1f})", "", "", "≤ 64 MiB at 40,000"),
        ("agent RSS after scrapes (peak), default cap", n, f"{capped_rss:.1f} MiB ({capped_hwm:.1f})", "", "",
         "≤ 64 MiB at 40,000"),
        ("kernel map bytes per flow: capacity / live / with socket storage", n,
         f"{per_cap:.0f} / {per_entry:.0f} / {per_cap + storage:.0f} B", map_desc, "", "≤ 256 B"),
        ("start-up to first /metrics", n, f"{median(startups) * 1e3:.0f} ms", "", "", "< 1 s"),
    ]
    for forced, m_scrape, m_snapshot, refusal in other_modes:
        if m_scrape is None:
            rows.append((f"snapshot, --bpf.mode {forced}", n, "refused by this kernel", refusal, "", ""))
            continue
        rows += [
            (f"snapshot, --bpf.mode {forced}", n, f"{m_snapshot * 1e3:.1f} ms", f"ss -tin {ss_time * 1e3:.1f} ms",
             f"{ss_time / m_snapshot:.1f}x", "≥ 20x at 40,000"),
            (f"full scrape, cap off, --bpf.mode {forced}", n, f"{m_scrape * 1e3:.1f} ms",
             f"ss -tin {ss_time * 1e3:.1f} ms", f"{ss_time / m_scrape:.2f}x", "≥ 4x at 40,000"),
        ]
    if ss2:
        rows.append(("seed collector: ss2 --tcp --process (time, peak RSS)", n, "",
                     f"{ss2[0]:.2f} s, {ss2[1]:.0f} MiB", f"{ss2[0] / capped:.0f}x vs capped scrape", ""))
    else:
        rows.append(("seed collector: ss2 --tcp --process", n, "", "not installed (pip install pyroute2==0.7.8)", "", ""))


def build_churn(tmp):
    exe = os.path.join(tmp, "bench_churn")
    subprocess.run(["gcc", "-O2", "-o", exe, os.path.join(HERE, "bench_churn.c")], check=True)
    return exe


class SockopsFloor:
    """scripts/bench_sockops_floor.bpf.c, loaded and pinned; attach() puts it on the cgroup
    v2 root for one run. Everything is undone at exit, even after a failure."""

    PIN = "/sys/fs/bpf/flowstat_bench_sockops_floor"

    def __init__(self, tmp):
        obj = os.path.join(tmp, "floor.o")
        subprocess.run(["clang", "-O2", "-g", "-target", "bpf", f"-I/usr/include/{platform.machine()}-linux-gnu",
                        "-c", os.path.join(HERE, "bench_sockops_floor.bpf.c"), "-o", obj], check=True)
        subprocess.run(["bpftool", "prog", "load", obj, self.PIN, "type", "sockops"], check=True)
        atexit.register(self.remove)
        with open("/proc/mounts") as mounts:
            self.cgroup = next(line.split()[1] for line in mounts if line.split()[2] == "cgroup2")

    def run(self, exe, seconds):
        subprocess.run(["bpftool", "cgroup", "attach", self.cgroup, "sock_ops", "pinned", self.PIN], check=True)
        try:
            return churn_once(exe, seconds)
        finally:
            subprocess.run(["bpftool", "cgroup", "detach", self.cgroup, "sock_ops", "pinned", self.PIN], check=True)

    def remove(self):
        if os.path.exists(self.PIN):
            os.unlink(self.PIN)


def churn_once(exe, seconds):
    out = subprocess.run([exe, "127.0.9.1", str(CHURN_PORT), str(seconds), str(os.cpu_count() or 2), "127.3.0"],
                         capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    return float(out.strip())


def measure_churn(binary, exe, floor, runs, seconds, rows, hooks_out):
    log(f"churn: {runs} runs of {seconds} s without the agent, with a do-nothing sockops program and "
        "with the agent, in turn")
    without, with_floor, with_agent = [], [], []
    for _ in range(runs):
        without.append(churn_once(exe, seconds))
        time.sleep(1)
        with_floor.append(floor.run(exe, seconds))
        time.sleep(1)
        agent = Agent(binary)
        try:
            with_agent.append(churn_once(exe, seconds))
        finally:
            agent.stop()
        time.sleep(1)
    # One more run, with the kernel's BPF statistics on, for the hook cost under churn.
    agent = Agent(binary)
    try:
        set_sysctl("kernel.bpf_stats_enabled", 1)
        before = prog_stats(agent.proc.pid)
        churn_once(exe, seconds)
        after = prog_stats(agent.proc.pid)
        set_sysctl("kernel.bpf_stats_enabled", 0)
        hooks_out["churn"] = hook_costs(before, after)
    finally:
        agent.stop()
    log(f"churn without the agent: {sorted(round(x) for x in without)}; "
        f"do-nothing sockops: {sorted(round(x) for x in with_floor)}; with: {sorted(round(x) for x in with_agent)}")
    a, f, b = median(without), median(with_floor), median(with_agent)
    rows.append(("churn: connections per second", "-", f"{b:,.0f}/s", f"no agent {a:,.0f}/s",
                 f"{(b - a) / a * 100:+.1f}%", "≥ -3%"))
    rows.append(("churn: a sockops program that only turns on the same callbacks", "-", f"{f:,.0f}/s",
                 f"no agent {a:,.0f}/s", f"{(f - a) / a * 100:+.1f}%", "(floor of any sockops design)"))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flows", default="10000,40000", help="comma-separated N (flows as ss counts them)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--churn-seconds", type=int, default=5)
    parser.add_argument("--period", type=float, default=2.0, help="seconds between two messages on one flow")
    parser.add_argument("--binary", default=os.path.join(ROOT, ".build/release/flowstat"))
    parser.add_argument("--no-churn", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: needs root (BPF, sysctl, bpftool)")
    for tool in ("ss", "bpftool", "gcc"):
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
    print(f"command: {' '.join(sys.argv)} (median of {args.runs} runs)")
    print()

    # TIME_WAIT sockets left by an earlier churn run would be walked by ss and iter/tcp.
    deadline = time.monotonic() + 75
    while time_wait_count() > 1000 and time.monotonic() < deadline:
        log(f"waiting for {time_wait_count()} TIME_WAIT sockets to expire")
        time.sleep(5)
    rows, hooks = [], {}
    with tempfile.TemporaryDirectory(prefix="flowstat-bench-") as tmp:
        # Flows first: churn leaves tens of thousands of TIME_WAIT sockets for a minute,
        # which both ss and the agent's iter/tcp refresh would walk too.
        for n in [int(x) for x in args.flows.split(",") if x]:
            measure_flows(args.binary, n, args.runs, args.period, rows, hooks)
        if not args.no_churn:
            measure_churn(args.binary, build_churn(tmp), SockopsFloor(tmp), args.runs, args.churn_seconds, rows, hooks)

    for load, costs in hooks.items():
        for name, (ns, runs) in sorted(costs.items()):
            # iter/tcp runs once per socket per refresh, not per packet: no target.
            target = "" if "iter" in name else "≤ 100 ns"
            rows.append((f"hook cost: {name}, {runs:,} runs", load, f"{ns:.0f} ns", "", "", target))

    print("| figure | N | flowstat | baseline | ratio | target |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


if __name__ == "__main__":
    main()
