"""The comparison: our server and the ones people would pick instead, side by side, one run.

    python benchmarks/run.py              # everything (installs missing servers)
    python benchmarks/run.py --quick      # smaller loads, for a first look

Each server runs pinned to core 0, the load generator (loadgen.py) to core
1. ``p2pchat-cluster`` is one node of a cluster (``p2pchat-server --cluster``)
on core 0, with a redis-server of its own for each run on core 1 beside the
load generator: ``--only p2pchat p2pchat-cluster`` puts it beside the
standalone server, with the ratios of the issue's goals. Flood control is off everywhere (ours: --flood-rate 0; ngircd:
MaxPenaltyTime 0 and +F senders; InspIRCd: no fake lag, huge command
rate; miniircd has none), and send queues are large enough for the load.
Figures on a shared machine vary between runs, so the table reports ratios
measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
MINIIRCD_VENV = Path(tempfile.gettempdir()) / "p2pchat-bench-miniircd"

NGIRCD_CONF = """\
[Global]
Name = bench.local
Info = benchmark
Listen = 127.0.0.1
Ports = {port}
ServerUID = {uid}
ServerGID = {gid}
PidFile = {dir}/ngircd.pid
MotdPhrase = bench
[Limits]
MaxConnections = 0
MaxConnectionsIP = 0
MaxJoins = 0
MaxNickLength = 30
MaxPenaltyTime = 0
PingTimeout = 600
PongTimeout = 600
[Options]
DNS = no
Ident = no
PAM = no
[Operator]
Name = bench
Password = bench
"""

INSPIRCD_CONF = """\
<server name="bench.local" description="benchmark" network="bench">
<admin name="bench" nick="bench" email="bench@bench.local">
<bind address="127.0.0.1" port="{port}" type="clients">
<connect name="main" allow="*" maxconnwarn="off" localmax="100000" globalmax="100000"
  limit="100000" pingfreq="600" timeout="600" recvq="1048576" softsendq="67108864"
  hardsendq="268435456" threshold="2000000" commandrate="2000000000" fakelag="no">
<performance netbuffersize="65536" somaxconn="1024" softlimit="65535">
<limits maxnick="30" maxchan="64">
<oper name="bench" password="bench" host="*@*" type="bench">
<type name="bench" classes="all">
<class name="all" commands="*" privs="*" usermodes="*" chanmodes="*">
<pid file="{dir}/inspircd.pid">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="{dir}/inspircd.log">
<options hostintopic="no">
<security hidesplits="no" userstats="" allowcoreunload="no">
"""


@dataclass
class Server:
    name: str
    proto: str
    argv: list[str]
    port: int
    env: dict[str, str] | None = None
    # A cluster node: each run starts a redis-server of its own listening here first.
    redis_socket: Path | None = None
    redis_core: str = "1"
    redis_pid: int | None = None  # that redis-server, while a run is on


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_installed(quiet: bool, only: list[str] | None = None) -> None:
    """Installs the servers we compare with, if missing (Debian packages, a venv for miniircd);
    with ``only``, just those whose name contains one of its words."""

    def wanted(name: str) -> bool:
        return only is None or any(o.lower() in name for o in only)

    missing = [
        pkg
        for cmd, pkg in (
            ("ngircd", "ngircd"),
            ("inspircd", "inspircd"),
            ("redis-server", "redis-server"),
        )
        if wanted(cmd) and not (shutil.which(cmd) or Path(f"/usr/sbin/{cmd}").exists())
    ]
    if missing and shutil.which("apt-get"):
        print(f"installing {', '.join(missing)} with apt-get ...", file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        out = subprocess.DEVNULL if quiet else None
        subprocess.run(["apt-get", "update", "-qq"], check=False, stdout=out, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", *missing], check=False, stdout=out, env=env
        )
    if wanted("miniircd") and not (MINIIRCD_VENV / "bin" / "miniircd").exists():
        print("installing miniircd into its own venv ...", file=sys.stderr)
        subprocess.run([PYTHON, "-m", "venv", str(MINIIRCD_VENV)], check=True)
        subprocess.run(
            [str(MINIIRCD_VENV / "bin" / "pip"), "install", "-q", "miniircd"], check=False
        )


def binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidate = Path("/usr/sbin") / name
    return str(candidate) if candidate.exists() else None


def p2pchat_server(name: str, src: Path | None, redis_socket: Path | None = None) -> Server:
    """Our server; from another source tree (``src``, a src/ folder) when given; a node of
    a cluster on the Redis at ``redis_socket`` when given."""
    env = None if src is None else dict(os.environ, PYTHONPATH=str(src.resolve()))
    argv = [PYTHON, "-m", "p2pchat.server", "--host", "127.0.0.1", "--port", str(free_port())]
    argv += ["--flood-rate", "0", "--sendq-bytes", str(256 << 20), "--max-clients", "20000"]
    argv += ["--log-level", "warning"]
    usage = subprocess.run([*argv[:3], "--help"], capture_output=True, text=True, env=env).stdout
    if "--flood-rate-bytes" in usage:  # older servers count messages only
        argv += ["--flood-rate-bytes", "0"]
    if redis_socket is not None:
        argv += ["--cluster", f"unix://{redis_socket}", "--cluster-name", "bench"]
    return Server(name, "p2pchat", argv, int(argv[6]), env, redis_socket)


def servers(workdir: Path, only: list[str] | None, baseline: Path | None = None) -> list[Server]:
    found = [p2pchat_server("p2pchat", None)]
    # Only when asked for by name: "p2pchat" alone keeps meaning the standalone server.
    if binary("redis-server") and any("cluster" in o.lower() for o in only or []):
        found.append(p2pchat_server("p2pchat-cluster", None, workdir / "r.sock"))
    if baseline is not None:
        found.append(p2pchat_server(f"p2pchat at {baseline}", baseline))
    if ngircd := binary("ngircd"):
        port = free_port()
        conf = workdir / "ngircd.conf"
        conf.write_text(
            NGIRCD_CONF.format(port=port, dir=workdir, uid=os.getuid(), gid=os.getgid())
        )
        found.append(Server("ngircd 26", "irc", [ngircd, "-n", "-f", str(conf)], port))
    if inspircd := binary("inspircd"):
        port = free_port()
        conf = workdir / "inspircd.conf"
        conf.write_text(INSPIRCD_CONF.format(port=port, dir=workdir))
        found.append(
            Server(
                "InspIRCd 3", "irc", [inspircd, "--nofork", "--runasroot", f"--config={conf}"], port
            )
        )
    if (MINIIRCD_VENV / "bin" / "miniircd").exists():
        port = free_port()
        found.append(
            Server(
                "miniircd 2.3",
                "irc",
                [
                    str(MINIIRCD_VENV / "bin" / "miniircd"),
                    "--listen",
                    "127.0.0.1",
                    "--ports",
                    str(port),
                    "--setuid",
                    f"{os.getuid()}:{os.getgid()}" if os.getuid() else "root",
                ],
                port,
            )
        )
    if redis := binary("redis-server"):
        port = free_port()
        found.append(
            Server(
                "Redis 7 pub/sub",
                "redis",
                [
                    redis,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--client-output-buffer-limit",
                    "pubsub 0 0 0",
                    "--maxclients",
                    "20000",
                ],
                port,
            )
        )
    return [s for s in found if only is None or any(o.lower() in s.name.lower() for o in only)]


def wait_ready(ready: Callable[[], object], proc: subprocess.Popen[bytes], what: str) -> None:
    """Waits until ``ready()`` returns without OSError (15 s at most, or until ``proc`` ends)."""
    deadline = time.monotonic() + 15
    while True:
        try:
            ready()
            return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.05)


def redis_ping(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(1)
        s.connect(str(path))
        s.sendall(b"PING\r\n")
        if not s.recv(64).startswith(b"+PONG"):
            raise OSError("no PONG yet")  # loading


@contextlib.contextmanager
def cluster_redis(path: Path, workdir: Path, core: str) -> Iterator[int]:
    """A redis-server of its own for one run of a cluster node (empty, no persistence), on
    core 1 beside the load generator: core 0 is the node's, as it is the standalone
    server's. Stopped by its PID."""
    redis = binary("redis-server")
    assert redis is not None
    path.unlink(missing_ok=True)
    argv = ["taskset", "-c", core, redis, "--save", "", "--appendonly", "no", "--port", "0"]
    argv += ["--unixsocket", str(path), "--dir", str(workdir), "--logfile", "redis.log"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(lambda: redis_ping(path), proc, f"redis-server; see {workdir}/redis.log")
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def running(server: Server, workdir: Path) -> Iterator[int]:
    with contextlib.ExitStack() as stack:
        if server.redis_socket is not None:
            server.redis_pid = stack.enter_context(
                cluster_redis(server.redis_socket, workdir, server.redis_core)
            )
        yield stack.enter_context(started(server, workdir))


@contextlib.contextmanager
def started(server: Server, workdir: Path) -> Iterator[int]:
    log = (workdir / f"{server.name.split()[0]}.log").open("w")
    proc = subprocess.Popen(
        ["taskset", "-c", "0", *server.argv], stdout=log, stderr=log, cwd=workdir, env=server.env
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", server.port), 0.2),
            ):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                tail = Path(log.name).read_text().strip().splitlines()[-3:]
                raise RuntimeError(f"{server.name} did not start: {' / '.join(tail)}")
            time.sleep(0.05)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def loadgen(server: Server, *extra: str) -> dict[str, object]:
    cmd = [
        "taskset",
        "-c",
        "1",
        PYTHON,
        str(HERE / "loadgen.py"),
        "--proto",
        server.proto,
        "--port",
        str(server.port),
        *extra,
    ]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    except subprocess.TimeoutExpired:
        return {"error": "did not finish within 900 s"}
    if out.returncode:
        return {"error": (out.stderr or out.stdout).strip().splitlines()[-1:]}
    return json.loads(out.stdout)


def measure(server: Server, workdir: Path, *extra: str) -> dict[str, object]:
    with running(server, workdir) as pid:
        cpu_before = cpu_seconds(pid)
        redis_before = cpu_seconds(server.redis_pid) if server.redis_pid else 0.0
        result = loadgen(server, *(arg.replace("{pid}", str(pid)) for arg in extra))
        result["server_cpu_s"] = round(cpu_seconds(pid) - cpu_before, 2)
        result["server_peak_rss_mb"] = round(peak_rss_mb(pid), 1)
        if server.redis_pid:
            result["redis_cpu_s"] = round(cpu_seconds(server.redis_pid) - redis_before, 2)
    return result


def load(receivers: int, senders: int = 0, messages: int = 0, *extra: str) -> list[str]:
    return [
        "--receivers",
        str(receivers),
        "--senders",
        str(senders),
        "--messages",
        str(messages),
        *extra,
    ]


LATENCY = ("--latency", "--rate")
STORM = ("--server-pid", "{pid}", "--timeout", "900", "--batch")
WORKLOADS = {
    "fanout-200": load(200, 4, 2000),
    "fanout-1000": load(1000, 2, 1000),
    "latency-500": load(500, 4, 2500, *LATENCY, "2000"),
    # The same load with one receiver in 10 timing: the load generator stays off its limit.
    "latency-500-sampled": load(500, 4, 2500, *LATENCY, "2000", "--time-every", "10"),
    "joinseq-2000": load(2000, 0, 0, "--stagger", "--timeout", "600"),
    "idle-1000": load(1000, 0, 0, "--report-rss", "{pid}"),
    "idle-10000": load(10000, 0, 0, "--report-rss", "{pid}", "--timeout", "600"),
    # Issue 10's goals: server CPU against ngircd's, and 10,000 at once within 60 s
    # while a broadcast still gets through within 1 s.
    "joinstorm-2000": load(2000, 0, 0, "--attempt-timeout", "30", *STORM, "500"),
    "joinstorm-10000": load(10000, 0, 0, *STORM, "10000", "--probe"),
}
QUICK = {
    "fanout-200": load(100, 4, 500),
    "fanout-1000": load(300, 2, 300),
    "latency-500": load(100, 4, 500, *LATENCY, "1000"),
    "latency-500-sampled": load(100, 4, 500, *LATENCY, "1000", "--time-every", "10"),
    "joinseq-2000": load(300, 0, 0, "--stagger"),
    "idle-1000": load(300, 0, 0, "--report-rss", "{pid}"),
    "idle-10000": load(1000, 0, 0, "--report-rss", "{pid}"),
    "joinstorm-2000": load(500, 0, 0, "--attempt-timeout", "30", *STORM, "125"),
    "joinstorm-10000": load(2000, 0, 0, *STORM, "2000", "--probe"),
}
# Workloads run against some servers only (the others would take many minutes).
SERVERS_OF = {"joinstorm-10000": ["p2pchat"]}
# What each workload is judged on; the median run of --repeat is kept by this figure.
DEFAULT_WORKLOADS = ["fanout-200", "fanout-1000", "latency-500", "joinseq-2000"]
GOALS = {
    "joinstorm-2000": "server CPU at most 0.3x ngircd's",
    "joinstorm-10000": "done within 60 s; every probe delivered within 1000 ms",
}
# The cluster's goals (docs/CLUSTER.md): a node against the standalone server, same run.
CLUSTER_MIN_FANOUT = 0.5  # a node's deliveries/s at least this share of the standalone's
CLUSTER_MAX_EXTRA_P99_MS = 5.0  # a node's p99 latency at most this much over the standalone's


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="smaller loads")
    ap.add_argument("--only", nargs="*", help="servers whose name contains these words")
    ap.add_argument(
        "--workloads",
        nargs="*",
        default=DEFAULT_WORKLOADS,
        choices=list(WORKLOADS),
        help="default: the fan-out, latency and one-after-another join runs; "
        "joinstorm-2000 and joinstorm-10000 measure join storms",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs per server, taking turns; the median is kept",
    )
    ap.add_argument("--no-install", action="store_true")
    ap.add_argument("--json", metavar="FILE", help="also write every result to FILE")
    ap.add_argument(
        "--baseline",
        metavar="SRC",
        type=Path,
        help="also run our server from another source tree's src/ (an older commit's "
        "worktree), as its own row of the same run",
    )
    ap.add_argument(
        "--cluster-redis-core",
        default="1",
        metavar="CPUS",
        help="where p2pchat-cluster's redis-server runs (taskset -c): 1, beside the load "
        "generator; 0, beside the node; 0,1 either",
    )
    args = ap.parse_args()
    if not shutil.which("taskset"):
        print("run.py: taskset (util-linux) is needed to pin processes", file=sys.stderr)
        return 2
    if not args.no_install:
        ensure_installed(quiet=True, only=args.only)
    table = WORKLOADS if not args.quick else QUICK
    results: dict[str, dict[str, dict[str, object]]] = {}
    with tempfile.TemporaryDirectory(prefix="p2pchat-bench-") as tmp:
        workdir = Path(tmp)
        for name in args.workloads:
            results[name] = {}
            only = SERVERS_OF.get(name, args.only)
            if args.only is not None and only is not args.only:
                only = [o for o in only if any(w.lower() in o for w in args.only)]
            chosen = servers(workdir, only, args.baseline)
            runs: dict[str, list[dict[str, object]]] = {server.name: [] for server in chosen}
            # Round after round, each server once per round: a change in the machine's
            # other load then falls on every server alike, not on one.
            for round_ in range(args.repeat):
                for server in chosen:
                    server.redis_core = args.cluster_redis_core
                    print(
                        f"{name}: {server.name} ({round_ + 1} of {args.repeat}) ...",
                        file=sys.stderr,
                        flush=True,
                    )
                    runs[server.name].append(measure(server, workdir, *table[name]))
            key = "deliveries_per_s"
            if name.startswith("joinstorm"):
                key = "storm_server_cpu_s"
            elif name.startswith("latency"):
                key = "latency_p99_ms"  # what a latency run is judged on
            for server in chosen:
                done = runs[server.name]
                good = sorted(
                    (r for r in done if r.get(key) is not None),
                    key=lambda r: r[key],
                )  # type: ignore[arg-type,return-value]
                results[name][server.name] = good[len(good) // 2] if good else done[0]
                print(
                    f"  {server.name}: {key} of each run: {[r.get(key) for r in done]}",
                    file=sys.stderr,
                )
                print(f"  {json.dumps(results[name][server.name])}", file=sys.stderr, flush=True)
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def report(results: dict[str, dict[str, dict[str, object]]]) -> None:
    for workload, by_server in results.items():
        if workload.startswith("joinstorm"):
            report_storm(workload, by_server)
            continue
        print(f"\n## {workload}  ({' '.join(WORKLOADS[workload])})")
        print(
            f"{'server':18} {'deliveries/s':>13} {'lost':>6} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'CPU s':>7} {'peak RSS MB':>12} {'joins s':>8} {'idle RSS MB':>12}"
        )
        for name, r in by_server.items():
            if "error" in r:
                print(f"{name:18} error: {r['error']}")
                continue
            cells = [r.get(k) for k in ("latency_p50_ms", "latency_p99_ms")]
            p50, p99 = (c if c is None else round(c, 2) for c in cells)  # type: ignore[arg-type]
            print(
                f"{name:18} {r['deliveries_per_s']:>13,} {r['lost']:>6} {p50!s:>8} {p99!s:>8} "
                f"{r['server_cpu_s']:>7} {r['server_peak_rss_mb']:>12} "
                f"{r.get('join_storm_s')!s:>8} {r.get('server_rss_mb_idle')!s:>12}"
            )
        compare(by_server)
        compare_cluster(by_server)


def report_storm(workload: str, by_server: dict[str, dict[str, object]]) -> None:
    """Join storms: wall time and the server's CPU over the storm, ours as a ratio of ngircd's."""
    print(f"\n## {workload}  ({' '.join(WORKLOADS[workload])})")
    print(f"goal: {GOALS[workload]}")
    print(
        f"{'server':18} {'wall s':>8} {'CPU s':>8} {'CPU vs ngircd':>14} {'wall vs ngircd':>15} "
        f"{'probe p99 ms':>13} {'probe max ms':>13} {'probes lost':>12} {'peak RSS MB':>12}"
    )
    ref = next((r for n, r in by_server.items() if "ngircd" in n and "error" not in r), None)

    def ratio(r: dict[str, object], key: str) -> str:
        if ref is None or not ref.get(key) or r.get(key) is None:
            return "-"
        return f"{r[key] / ref[key]:.2f}x"  # type: ignore[operator]

    for name, r in by_server.items():
        if "error" in r:
            print(f"{name:18} error: {r['error']}")
            continue
        lost = None
        if r.get("probes_sent") is not None:
            lost = r["probes_sent"] - r["probes_received"]  # type: ignore[operator]
        print(
            f"{name:18} {r['join_storm_s']!s:>8} {r['storm_server_cpu_s']!s:>8} "
            f"{ratio(r, 'storm_server_cpu_s'):>14} {ratio(r, 'join_storm_s'):>15} "
            f"{r.get('probe_p99_ms', '-')!s:>13} {r.get('probe_max_ms', '-')!s:>13} "
            f"{'-' if lost is None else lost!s:>12} {r['server_peak_rss_mb']!s:>12}"
        )


def compare(by_server: dict[str, dict[str, object]]) -> None:
    """Ours against the best IRC server of this run, on what the workload measures."""
    ours = by_server.get("p2pchat")
    # InspIRCd stays out of "best": its flood control still holds each client to
    # about 100 lines/s here (see benchmarks/README.md). Redis is the ceiling.
    irc = {
        n: r
        for n, r in by_server.items()
        if n not in ("p2pchat", "p2pchat-cluster")
        and "Redis" not in n
        and "InspIRCd" not in n
        and "error" not in r
    }
    if not ours or "error" in ours or not irc:
        return
    if ours["deliveries_per_s"]:
        name, best = max(irc.items(), key=lambda kv: kv[1]["deliveries_per_s"])  # type: ignore[arg-type,return-value]
        print(
            f"deliveries/s: p2pchat / {name} = "
            f"{ours['deliveries_per_s'] / best['deliveries_per_s']:.2f}x"
        )  # type: ignore[operator]
    if ours.get("latency_p99_ms"):
        name, best = min(irc.items(), key=lambda kv: kv[1]["latency_p99_ms"] or 1e9)  # type: ignore[arg-type,return-value]
        print(
            f"p99 latency: p2pchat {ours['latency_p99_ms']:.1f} ms, best {name} "
            f"{best['latency_p99_ms']:.1f} ms"
        )
    if not ours["deliveries_per_s"] and ours.get("join_storm_s"):
        name, best = min(irc.items(), key=lambda kv: kv[1]["join_storm_s"])  # type: ignore[arg-type,return-value]
        print(
            f"join storm: p2pchat {ours['join_storm_s']} s, {name} {best['join_storm_s']} s "
            f"(p2pchat takes {ours['join_storm_s'] / best['join_storm_s']:.2f}x the time)"
        )  # type: ignore[operator]


def compare_cluster(by_server: dict[str, dict[str, object]]) -> None:
    """A cluster node against the standalone server of this run, on the cluster's goals."""
    one, node = by_server.get("p2pchat"), by_server.get("p2pchat-cluster")
    if not one or not node or "error" in one or "error" in node:
        return
    sent = node.get("sent_per_s")
    if one.get("latency_p99_ms") and node.get("latency_p99_ms"):
        extra = node["latency_p99_ms"] - one["latency_p99_ms"]  # type: ignore[operator]
        verdict = "met" if extra <= CLUSTER_MAX_EXTRA_P99_MS else "NOT met"
        print(
            f"cluster p99 latency: node {node['latency_p99_ms']:.1f} ms, standalone "
            f"{one['latency_p99_ms']:.1f} ms: {extra:+.1f} ms, "
            f"{node['latency_p99_ms'] / one['latency_p99_ms']:.2f}x "  # type: ignore[operator]
            f"(goal at most +{CLUSTER_MAX_EXTRA_P99_MS:g} ms: {verdict}); "
            f"sent {one.get('sent_per_s')} / {sent} broadcasts/s"
        )
    elif one["deliveries_per_s"]:
        ratio = node["deliveries_per_s"] / one["deliveries_per_s"]  # type: ignore[operator]
        verdict = "met" if ratio >= CLUSTER_MIN_FANOUT else "NOT met"
        print(
            f"cluster deliveries/s: node {node['deliveries_per_s']:,} / standalone "
            f"{one['deliveries_per_s']:,} = {ratio:.2f}x "
            f"(goal at least {CLUSTER_MIN_FANOUT:g}x: {verdict})"
        )
    print(
        f"cluster CPU s: node {node['server_cpu_s']}, its Redis {node.get('redis_cpu_s')}, "
        f"standalone {one['server_cpu_s']}"
    )


if __name__ == "__main__":
    sys.exit(main())
