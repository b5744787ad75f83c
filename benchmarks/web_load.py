"""Browser sessions on one host, without browsers: a load generator opens the
WebSockets a page opens, joins, and counts what each page is sent.

    python benchmarks/web_load.py [--sessions 500] [--rate 20] [--duration 20]

Starts `p2pchat-server --web` (pinned to core 0 when taskset is there; the
load generator to core 1), opens ``--sessions`` pages (each a participant
with its own ChatClient in the host), then has the pages broadcast
``--rate`` messages a second in all, each carrying its send time, for
``--duration`` seconds. Every page must get every message (its own as an
`own` line); reported: lost, duplicated, latency from send to receipt (p50,
p99, max) over every (message, page), and the host's RSS per session (RSS
with the sessions minus RSS before them, divided by their number).

Exit status 1 if anything was lost or duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
from run import cpu_seconds  # beside this file in benchmarks/
from soak import rss_kb

PYTHON = sys.executable


def start_host(pin: bool, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    argv = [PYTHON, "-m", "p2pchat.server", "--host", "127.0.0.1", "--port", "0"]
    argv += ["--web", "127.0.0.1:0", "--web-max-sessions", "100000", "--max-clients", "100000"]
    if pin and shutil.which("taskset"):
        argv = ["taskset", "-c", "0", *argv]
    # Its log goes to a file: a pipe nobody reads would stop the host once full.
    proc = subprocess.Popen(argv, stderr=log.open("wb"), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if m := re.search(r"web client on http://127\.0\.0\.1:(\d+)/", log.read_text()):
            return proc, int(m.group(1))
        time.sleep(0.05)
    raise SystemExit(f"the host did not start: {log.read_text()}")


class Page:
    def __init__(self, nick: str, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.nick = nick
        self.ws = ws
        self.got: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.listed = 0  # participants on the last list it was sent

    async def read(self) -> None:
        async for frame in self.ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                break
            message = json.loads(frame.data)
            if message["type"] == "participants":
                self.listed = len(message["participants"])
            if message["type"] != "line":
                continue
            body = message["line"]["body"]
            if body.startswith("bench "):
                _, ident, sent = body.split(" ")
                self.got[ident] += 1
                self.latencies.append(time.time() - float(sent))


async def open_page(http: aiohttp.ClientSession, port: int, nick: str) -> Page:
    url = f"http://127.0.0.1:{port}"
    ws = await http.ws_connect(f"{url}/ws", origin=url, max_msg_size=0)
    await ws.send_str(json.dumps({"type": "join", "nick": nick}))
    while True:
        frame = await ws.receive(timeout=30)
        message = json.loads(frame.data)
        if message["type"] == "welcome":
            return Page(nick, ws)
        if message["type"] == "refused":
            raise SystemExit(f"{nick} refused: {message['reason']}")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--rate", type=float, default=20.0, help="broadcasts a second in all")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args()
    if not args.no_pin and shutil.which("taskset"):
        os.sched_setaffinity(0, {1})
    log = Path(tempfile.mkdtemp(prefix="p2pchat-webload-")) / "host.log"
    proc, port = start_host(not args.no_pin, log)
    try:
        time.sleep(0.5)
        base = rss_kb(proc.pid)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            started = time.monotonic()
            pages: list[Page] = []
            for batch in range(0, args.sessions, 50):
                pages += await asyncio.gather(
                    *(
                        open_page(http, port, f"s{i}")
                        for i in range(batch, min(args.sessions, batch + 50))
                    )
                )
                print(f"  {len(pages)} joined", file=sys.stderr, flush=True)
            joined_in = time.monotonic() - started
            readers = [asyncio.create_task(p.read()) for p in pages]
            # Until every page has been told of everyone: the storm of joins is over.
            while any(p.listed < len(pages) for p in pages):
                await asyncio.sleep(0.1)
            settled_in = time.monotonic() - started
            with_sessions = rss_kb(proc.pid)
            count = int(args.rate * args.duration)
            cpu_before = cpu_seconds(proc.pid)
            begin = time.monotonic()
            for n in range(count):
                sender = pages[n % len(pages)]
                text = f"bench {n} {time.time():.6f}"
                await sender.ws.send_str(
                    json.dumps({"type": "input", "tab": "group", "text": text})
                )
                await asyncio.sleep(max(0.0, begin + (n + 1) / args.rate - time.monotonic()))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if all(len(p.got) >= count for p in pages):
                    break
                await asyncio.sleep(0.1)
            peak = rss_kb(proc.pid)
            cpu = cpu_seconds(proc.pid) - cpu_before
            wall = time.monotonic() - begin
            lost = sum(count - len(p.got) for p in pages)
            duplicated = sum(v - 1 for p in pages for v in p.got.values() if v > 1)
            latencies = [x for p in pages for x in p.latencies]
            for task in readers:
                task.cancel()
            for page in pages:
                await page.ws.close()
    finally:
        proc.terminate()
        proc.wait()
    per_session = (with_sessions - base) / len(pages)
    print(
        f"{len(pages)} web sessions joined in {joined_in:.1f} s, every page knew everyone "
        f"after {settled_in:.1f} s; {count} broadcasts at "
        f"{args.rate:.0f}/s to every session: {len(latencies)} deliveries, lost {lost}, "
        f"duplicated {duplicated}; latency p50 {percentile(latencies, 50) * 1000:.1f} ms, "
        f"p99 {percentile(latencies, 99) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms"
    )
    print(
        f"host CPU while broadcasting: {cpu:.1f} s in {wall:.1f} s "
        f"({cpu / max(1, len(latencies)) * 1e6:.0f} us a delivery)"
    )
    print(
        f"host RSS: {base / 1024:.1f} MiB before the sessions, {with_sessions / 1024:.1f} MiB "
        f"with them ({per_session:.0f} KiB a session), {peak / 1024:.1f} MiB at the end"
    )
    return 0 if lost == duplicated == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
