"""Benchmark: an Application Server under unauthenticated attack stays responsive and bounded.

A real Application Server (`pcnet init`, then the app service in its own process, SQLite) is
attacked from loopback addresses spread over 127.0.0.0/8 (never 127.0.0.1, which the
measuring client uses) by up to four kinds of hostile clients, `--connections` (2,000) of each,
kept open for `--duration` seconds: whenever the server closes one (a deadline), the attacker
opens another at once.

- `pcnet1`: pcnet/1 over TLS (ALPN pcnet/1): the handshake, then a partial hello line trickled
  a byte every few seconds, never finished;
- `slowloris`: plain HTTP on the shared port, a request head trickled a byte at a time;
- `handshake`: a TLS ClientHello, then silence (the server has done its half of the key
  exchange and waits);
- `signin`: bad `/api/v1/me` sign-ins (HTTP Basic) under ever-new usernames, one every
  `--signin-interval` seconds per connection.

Each kind runs alone, then all four together, after a quiet baseline. While they run, the
measuring client (its own process) calls the admin API with a bearer token, a new connection
each call (`GET /api/v1/printers`), and a real user signs in on /me every second; the figures
are their latency (p50/p99), the server's RSS (peak), and what the attackers saw. Then one
address tries to open 2x `max_connections_per_address` connections, to show the cap.

    .venv/bin/python bench/bench_hostile.py [--connections 2000] [--duration 20]
        [--kinds pcnet1,slowloris,handshake,signin,all]

Targets: authenticated API call p99 < 100 ms with 2,000 hostile connections of each kind
open; server RSS under the bound documented in docs/security.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import json
import multiprocessing
import os
import random
import re
import resource
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

_APP_RUNNER = """
import sys
from twisted.internet import reactor
from twisted.logger import globalLogBeginner, textFileLogObserver
globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
from pcnet.app.service import make_app_service
app = make_app_service(sys.argv[1], reactor)
app.startService()
reactor.addSystemEventTrigger("before", "shutdown", app.stopService)
reactor.run()
"""

KINDS = ("pcnet1", "slowloris", "handshake", "signin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def wait_port(port: int, timeout: float, process) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the Application Server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the Application Server did not listen on {port} within {timeout} s")


def api(port, token, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    hdrs = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    hdrs.update(headers or {})
    conn.request(method, "/api/v1" + path, body=None if body is None else json.dumps(body), headers=hdrs)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, data


def start_server(root: Path, listen_options: str = ""):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    http_port, tls_port = free_port(), free_port()
    data = root / "app"
    out = subprocess.run(
        [sys.executable, "-m", "pcnet.cli", "init", "--data-dir", str(data), "--host", "localhost",
         "--http", f"tcp:{http_port}:interface=127.0.0.1{listen_options}",
         "--tls", f"tcp:{tls_port}:interface=127.0.0.1{listen_options}"],
        capture_output=True, text=True, env=env, timeout=120, check=True)
    token = re.search(r"API token:\s+(\S+)", out.stdout).group(1)
    log = open(root / "app.log", "wb")
    process = subprocess.Popen([sys.executable, "-c", _APP_RUNNER, str(data / "pcnet.toml")],
                               env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    wait_port(http_port, 60, process)
    wait_port(tls_port, 60, process)
    status, _ = api(http_port, token, "POST", "/users",
                    {"username": "realuser", "password": "real-users-password-1"})
    assert status == 201, status
    config = (data / "pcnet.toml").read_text()
    per_address = int(re.search(r"max_connections_per_address = (\d+)", config).group(1))
    return process, http_port, tls_port, token, per_address


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


# --- the attackers (one process per kind, asyncio) -----------------------------------------------


def sources(kind_index: int, count: int) -> list[str]:
    """`count` distinct loopback addresses for one kind: 127.(10+kind).x.y, never 127.0.0.1."""
    return [f"127.{10 + kind_index}.{i // 250}.{i % 250 + 1}" for i in range(count)]


def client_hello() -> bytes:
    """A real TLS ClientHello (made once, replayed on every stuck-handshake connection)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["pcnet/1"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


class Counters:
    def __init__(self):
        self.opened = multiprocessing.Value("l", 0)
        self.open_now = multiprocessing.Value("l", 0)
        self.closed_by_server = multiprocessing.Value("l", 0)
        self.failed = multiprocessing.Value("l", 0)
        self.status = multiprocessing.Array("l", 6)   # 401, 429, other 4xx, 5xx, other, 2xx

    def add(self, value, n=1):
        with value.get_lock():
            value.value += n


def attack(kind: str, kind_index: int, n: int, http_port: int, tls_port: int, duration: float,
           signin_interval: float, counters: Counters, ready) -> None:
    raise_nofile()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Real attackers run on their own machines: here they take only the CPU the server and the
    # measuring client leave (the figures then show the server's cost, not the attackers').
    os.nice(19)
    asyncio.run(_attack(kind, kind_index, n, http_port, tls_port, duration, signin_interval,
                        counters, ready))


async def _attack(kind, kind_index, n, http_port, tls_port, duration, signin_interval, counters, ready):
    addrs = sources(kind_index, max(1, n // 20))   # 20 connections per address: under the cap
    tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls_ctx.check_hostname = False
    tls_ctx.verify_mode = ssl.CERT_NONE
    tls_ctx.set_alpn_protocols(["pcnet/1"])
    hello = client_hello()
    stop_at = time.monotonic() + duration
    rng = random.Random(kind_index)

    async def one(i):
        src = addrs[i % len(addrs)]
        while time.monotonic() < stop_at:
            writer = None
            try:
                if kind == "pcnet1":
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(
                        "127.0.0.1", tls_port, ssl=tls_ctx, server_hostname="localhost",
                        local_addr=(src, 0)), 30)
                    writer.write(b'{"op":"hello","id":1,"version":1,"role":"provider","node":"x')
                elif kind == "slowloris":
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(
                        "127.0.0.1", http_port, local_addr=(src, 0)), 30)
                    writer.write(b"GET /api/v1/printers HTTP/1.1\r\nHost: x\r\n")
                elif kind == "handshake":
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(
                        "127.0.0.1", tls_port, local_addr=(src, 0)), 30)
                    writer.write(hello)
                else:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(
                        "127.0.0.1", http_port, local_addr=(src, 0)), 30)
                counters.add(counters.opened)
                counters.add(counters.open_now)
                try:
                    if kind == "signin":
                        await signins(reader, writer)
                    else:
                        await hold(reader, writer)
                except (ConnectionResetError, asyncio.IncompleteReadError):
                    pass   # the server aborted it: closed by the server too
                finally:
                    counters.add(counters.open_now, -1)
                if time.monotonic() < stop_at:
                    counters.add(counters.closed_by_server)
            except (OSError, asyncio.TimeoutError, ssl.SSLError):
                counters.add(counters.failed)
                await asyncio.sleep(0.5)
            finally:
                if writer is not None:
                    writer.transport.abort()

    async def hold(reader, writer):
        """Trickle a byte every 3 s until the server closes the connection (or the end)."""
        while time.monotonic() < stop_at:
            try:
                data = await asyncio.wait_for(reader.read(65536), 3)
                if not data:
                    return
            except asyncio.TimeoutError:
                writer.write(b"a")

    async def signins(reader, writer):
        await asyncio.sleep(rng.random() * signin_interval)
        while time.monotonic() < stop_at:
            name = f"u{rng.getrandbits(48):x}"
            pair = base64.b64encode(f"{name}:guess".encode()).decode()
            writer.write(f"GET /api/v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {pair}\r\n\r\n"
                         .encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
            status = int(head.split(b" ", 2)[1])
            length = re.search(rb"(?i)content-length:\s*(\d+)", head)
            if length is not None:
                await reader.readexactly(int(length.group(1)))
            else:   # chunked
                while True:
                    size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                    await reader.readexactly(size + 2)
                    if size == 0:
                        break
            slot = {401: 0, 429: 1}.get(status, 2 if 400 <= status < 500 else 3 if status >= 500
                                        else 5 if status < 300 else 4)
            with counters.status.get_lock():
                counters.status[slot] += 1
            if b"connection: close" in head.lower():
                return
            await asyncio.sleep(signin_interval)

    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(one(i)))
        if i % 100 == 99:
            await asyncio.sleep(0.05)   # ramp up, so the accept queue does not overflow
    ready.set()
    await asyncio.gather(*tasks, return_exceptions=True)


# --- the measuring client ------------------------------------------------------------------------


def measure(http_port, token, duration, server_pid):
    """Admin API calls (new connection each) at ~20/s and a real user's /me sign-in every
    second, for `duration` seconds; returns latencies, statuses and the server's peak RSS."""
    api_ms, me_ms, statuses, me_statuses, rss = [], [], {}, {}, [rss_mb(server_pid)]
    connect_ms = []
    cpu0, t0 = cpu_seconds(server_pid), time.monotonic()
    stop_at = time.monotonic() + duration
    basic = base64.b64encode(b"realuser:real-users-password-1").decode()

    def call(path, headers, into, counts):
        t0 = time.perf_counter()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=30)
            conn.connect()
            connect_ms.append((time.perf_counter() - t0) * 1000)
            conn.request("GET", "/api/v1" + path, headers=headers)
            r = conn.getresponse()
            r.read()
            conn.close()
            status = r.status
        except OSError as e:
            status = type(e).__name__
        into.append((time.perf_counter() - t0) * 1000)
        counts[status] = counts.get(status, 0) + 1

    def me_loop():
        while time.monotonic() < stop_at:
            call("/me", {"Authorization": f"Basic {basic}"}, me_ms, me_statuses)
            time.sleep(1)

    me = threading.Thread(target=me_loop, daemon=True)
    me.start()
    next_rss = 0.0
    while time.monotonic() < stop_at:
        call("/printers", {"Authorization": f"Bearer {token}"}, api_ms, statuses)
        if time.monotonic() >= next_rss:
            rss.append(rss_mb(server_pid))
            next_rss = time.monotonic() + 0.5
        time.sleep(0.05)
    me.join(timeout=40)
    rss.append(rss_mb(server_pid))
    cpu = (cpu_seconds(server_pid) - cpu0) / (time.monotonic() - t0)
    return {"api_ms": api_ms, "me_ms": me_ms, "statuses": statuses, "me_statuses": me_statuses,
            "rss_peak": max(rss), "rss_end": rss[-1], "server_cpu": cpu, "connect_ms": connect_ms}


def run_phase(name, kinds, args, http_port, tls_port, token, server_pid):
    counters = {k: Counters() for k in kinds}
    procs = []
    for k in kinds:
        ready = multiprocessing.Event()
        p = multiprocessing.Process(target=attack, args=(
            k, KINDS.index(k), args.connections, http_port, tls_port, args.duration + args.ramp + 5,
            args.signin_interval, counters[k], ready), daemon=True)
        p.start()
        procs.append((p, ready))
    for p, ready in procs:
        ready.wait(60)
    time.sleep(args.ramp)   # let the connections open
    held = {k: counters[k].open_now.value for k in kinds}
    attackers_cpu0 = sum(cpu_seconds(p.pid) for p, _ in procs)
    figures = measure(http_port, token, args.duration, server_pid)
    figures["attackers_cpu"] = (sum(cpu_seconds(p.pid) for p, _ in procs) - attackers_cpu0) / args.duration
    held_end = {k: counters[k].open_now.value for k in kinds}
    for p, _ in procs:
        p.join(timeout=args.duration + args.ramp + 60)
        if p.is_alive():
            p.kill()
            p.join()
    return figures, counters, held, held_end


def show(name, figures, counters, held, held_end, baseline_rss):
    a, m = figures["api_ms"], figures["me_ms"]
    print(f"\n== {name}")
    for k, c in counters.items():
        s = list(c.status)
        extra = (f"; sign-ins answered 401: {s[0]}, 429: {s[1]}, other 4xx: {s[2]}, 5xx: {s[3]}"
                 if k == "signin" else "")
        print(f"   {k:10s} open at start {held[k]:5d}, at end {held_end[k]:5d}; opened {c.opened.value}, "
              f"closed by the server {c.closed_by_server.value}, failed to open {c.failed.value}{extra}")
    print(f"   admin API GET /printers (new connection each): n={len(a)} p50 {percentile(a, 50):.1f} ms "
          f"p99 {percentile(a, 99):.1f} ms max {max(a):.1f} ms; statuses {figures['statuses']}")
    c = figures["connect_ms"]
    print(f"   of which TCP connect (accept queue): p50 {percentile(c, 50):.1f} ms "
          f"p99 {percentile(c, 99):.1f} ms")
    print(f"   real user's /me sign-in: n={len(m)} p50 {percentile(m, 50):.1f} ms "
          f"p99 {percentile(m, 99):.1f} ms; statuses {figures['me_statuses']}")
    print(f"   server RSS peak {figures['rss_peak']:.0f} MB (baseline {baseline_rss:.0f} MB, "
          f"+{figures['rss_peak'] - baseline_rss:.0f} MB); server CPU {figures['server_cpu']:.0%} "
          f"of a core, attackers' {figures.get('attackers_cpu', 0):.0%}; load average "
          f"{os.getloadavg()[0]:.1f}")


def cap_check(http_port, per_address):
    """Open 2x the per-address cap from one address: how many does the server hold?"""
    socks, held = [], 0
    for _ in range(2 * per_address):
        s = socket.socket()
        s.bind(("127.99.0.1", 0))
        s.connect(("127.0.0.1", http_port))
        s.sendall(b"G")
        socks.append(s)
    time.sleep(1.0)
    for s in socks:
        s.setblocking(False)
        try:
            closed = s.recv(1) == b""
        except BlockingIOError:
            closed = False
        except OSError:
            closed = True
        held += not closed
        s.close()
    return held


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000, help="hostile connections per kind")
    parser.add_argument("--duration", type=float, default=20, help="seconds measured per phase")
    parser.add_argument("--ramp", type=float, default=8, help="seconds to open the connections")
    parser.add_argument("--signin-interval", type=float, default=5,
                        help="seconds between bad sign-ins on each signin connection")
    parser.add_argument("--kinds", default="pcnet1,slowloris,handshake,signin,all")
    parser.add_argument("--listen-options", default="",
                        help="appended to the server's endpoint strings, e.g. :backlog=1024")
    args = parser.parse_args()
    hard = raise_nofile()
    print(f"bench_hostile: {args.connections} hostile connections per kind, {args.duration:g} s "
          f"per phase; open files limit {hard}; {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="pcnet-hostile-") as tmp:
        root = Path(tmp)
        process, http_port, tls_port, token, per_address = start_server(root, args.listen_options)
        try:
            time.sleep(1)
            base = measure(http_port, token, min(args.duration, 10), process.pid)
            baseline_rss = base["rss_peak"]
            show("baseline: no hostile clients", base, {}, {}, {}, baseline_rss)
            phases = [k.strip() for k in args.kinds.split(",") if k.strip()]
            for phase in phases:
                kinds = list(KINDS) if phase == "all" else [phase]
                figures, counters, held, held_end = run_phase(phase, kinds, args, http_port, tls_port,
                                                              token, process.pid)
                show(f"{phase}: {args.connections} x {', '.join(kinds)}", figures, counters, held,
                     held_end, baseline_rss)
                time.sleep(3)
            held = cap_check(http_port, per_address)
            print(f"\n== per-address cap: {2 * per_address} connections from one address, "
                  f"{held} held (cap {per_address})")
            log = (root / "app.log").read_text(errors="replace")
            for pattern in ("open files limit", "connection caps", "refusing connections"):
                lines = [line for line in log.splitlines() if pattern in line]
                if lines:
                    print(f"   server log: {lines[0].split(']', 1)[-1].strip()} "
                          f"({len(lines)} such line{'s' if len(lines) > 1 else ''})")
            print(f"   server log lines in all: {len(log.splitlines())}; tracebacks: "
                  f"{log.count('Traceback')}")
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


if __name__ == "__main__":
    main()
