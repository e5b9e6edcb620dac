"""Benchmark: Print Provider -> Application Server decision latency, with N jobs in flight.

What is measured: the time from the CUPS backend's request reaching the provider
(`PrintProvider.handle_job`) to the provider's answer, for jobs that print, through the real
pcnet/1 link over TLS on loopback to a real Application Server (`pcnet init` + the app service,
its own process, SQLite with synchronous=FULL, every decision charged and durable before it is
answered). Spool analysis is excluded (a fixed analysis is returned at once; bench_spool.py
measures analysis); the provider still checks the spool file and writes nothing else. In the same
run, the bare `job.submit` request over the same link (no provider logic) is measured too.

    .venv/bin/python bench/bench_provider.py [--jobs 5000] [--in-flight 100]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

_APP_RUNNER = """
import sys
from twisted.internet import reactor
from pcnet.app.service import make_app_service
app = make_app_service(sys.argv[1], reactor)
app.startService()
reactor.addSystemEventTrigger("before", "shutdown", app.stopService)
reactor.run()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def api(port, token, method, path, body=None):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def start_server(root: Path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    http, tls = free_port(), free_port()
    data = root / "app"
    out = subprocess.run(
        [sys.executable, "-m", "pcnet.cli", "init", "--data-dir", str(data), "--host", "localhost",
         "--http", f"tcp:{http}:interface=127.0.0.1", "--tls", f"tcp:{tls}:interface=127.0.0.1"],
        capture_output=True, text=True, env=env, timeout=120, check=True)
    token = next(line.split(":", 1)[1].strip() for line in out.stdout.splitlines() if "API token:" in line)
    config = data / "pcnet.toml"
    config.write_text(config.read_text().replace(
        "auto_approve_networks = []", 'auto_approve_networks = ["127.0.0.0/8"]'))
    log = open(root / "app.log", "wb")
    process = subprocess.Popen([sys.executable, "-c", _APP_RUNNER, str(config)], env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_port(http, 60, process)
    wait_port(tls, 60, process)
    api(http, token, "POST", "/users", {"username": "bench", "initial_balance": "1000000000.0000",
                                        "restricted": False})
    api(http, token, "POST", "/printers", {"name": "bench-q", "server": "bench-provider",
                                           "queue": "bench-q"})
    return process, http, data / "tls" / "ca.pem"


def percentile(values, p):
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


async def run(reactor, args, port, ca_pem, root):
    from twisted.internet import defer, endpoints

    from pcnet.net.line import LineClientFactory, connect
    from pcnet.net.tls import client_tls_options
    from pcnet.provider.cupsadmin import Queue
    from pcnet.provider.journal import HeldJobs, OfflineJournal, PrinterCache
    from pcnet.provider.service import PrintProvider, ServerLink

    class Cups:
        def managed_queues(self):
            return defer.succeed([Queue("bench-q", "pcnet:socket://127.0.0.1:9", True, "", "", "")])

    analysis = {"pages": 3, "colour_pages": 1, "duplex": False, "copies": 1, "paper_size": "A4",
                "error": None, "fallback": False}
    spool_dir = root / "spool"
    spool_dir.mkdir()
    spool = spool_dir / "job.spool"
    spool.write_bytes(b"%PDF-1.4\n")
    link = ServerLink(reactor)
    provider = PrintProvider(
        node="bench-provider", clock=reactor, link=link, cups=Cups(),
        analyse=lambda path: defer.succeed(dict(analysis)),
        journal=OfflineJournal(root / "j" / "offline"), held=HeldJobs(root / "j" / "held"),
        printers=PrinterCache(root / "j" / "printers.json"), decision_timeout=60,
        spool_dir=spool_dir)
    factory = LineClientFactory(role="provider", node="bench-provider", credential="bench-credential",
                                clock=reactor, ops=provider.operations())
    endpoint = endpoints.wrapClientTLS(
        client_tls_options("localhost", ca_pem),
        endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port))
    session = await connect(endpoint, factory)
    link.attach(session)
    while provider.printers.get("bench-q") is None:
        await deferLater(reactor, 0.05)
    printer_id = provider.printers.get("bench-q")["id"]

    message = {"op": "job", "queue": "bench-q", "user": "bench", "title": "bench", "copies": 1,
               "options": "", "spool": str(spool), "stdin": False}

    async def provider_job(n):
        t0 = time.perf_counter()
        reply = await provider.handle_job(dict(message, job_id=n))
        if reply["action"] != "print":
            raise SystemExit(f"unexpected decision {reply}")
        return time.perf_counter() - t0

    async def bare_submit(n):
        import uuid

        t0 = time.perf_counter()
        reply = await session.request(
            "job.submit", uuid=str(uuid.uuid4()), queue="bench-q", printer_id=printer_id,
            user="bench", document_name="bench", pages=3, colour_pages=1, duplex=False, copies=1,
            paper_size="A4")
        if reply["action"] != "print":
            raise SystemExit(f"unexpected decision {reply}")
        return time.perf_counter() - t0

    async def measure(what, fn, total, in_flight):
        latencies = []
        counter = iter(range(1, total + 1))

        async def worker():
            for n in counter:
                latencies.append(await fn(n))

        t0 = time.perf_counter()
        await defer.gatherResults([defer.ensureDeferred(worker()) for _ in range(in_flight)],
                                  consumeErrors=True)
        elapsed = time.perf_counter() - t0
        ms = [x * 1000 for x in latencies]
        print(f"{what}: {total} jobs, {in_flight} in flight: {total / elapsed:,.0f} decisions/s, "
              f"latency p50 {percentile(ms, 50):.1f} ms, p99 {percentile(ms, 99):.1f} ms, "
              f"mean {statistics.mean(ms):.1f} ms, max {max(ms):.1f} ms")

    await measure("warm-up (provider)", provider_job, min(500, args.jobs), args.in_flight)
    await measure("provider decision (handle_job -> server -> answer)", provider_job, args.jobs,
                  args.in_flight)
    await measure("bare job.submit over the same link", bare_submit, args.jobs, args.in_flight)
    await measure("provider decision, 1 in flight", provider_job, min(1000, args.jobs), 1)
    session.close()


def deferLater(reactor, seconds):
    from twisted.internet import task

    return task.deferLater(reactor, seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--in-flight", type=int, default=100)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pcnet-bench-provider-"))
    process, port, ca = start_server(root)
    try:
        from twisted.internet import defer, task

        print(f"pcnet/1 over TLS on loopback to an Application Server on SQLite (synchronous=FULL), "
              f"{os.cpu_count()} CPUs; provider and server in separate processes")
        task.react(lambda reactor: defer.ensureDeferred(run(reactor, args, port, ca.read_bytes(), root)))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        import shutil

        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
