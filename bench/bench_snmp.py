"""Benchmark: one full SNMP poll round of 1,000 simulated printers.

snmpsim (Debian's `snmpsimd`, as `nobody`) serves the Sharp MX-3570N recording under 1,000
community names (`p0000` ... `p0999`), split over `--agents` snmpsimd processes on their own
ports (each process is single-threaded Python). With `--agent snmpd`, Debian's net-snmp agent
serves the recording's values instead (much less CPU per request, so the figures are the
pollers'). Then, in the same run:

- **pcnet**: 1,000 `snmp` driver devices (the real driver, reporting to the fake core) poll once
  each, all at once, through the shared poller (`--concurrency` polls in flight): the full poll
  (status, error bits, life counter, vendor counters, the supplies and alert tables; one GETBULK
  and one continuation per printer for this recording). Wall time, CPU per printer (this
  process, the pysnmp loop thread included), and false "down": printers whose poll got no
  answer (every printer is up, so each is false; `down_after` is 1 here, the strictest setting).
- **net-snmp**: the same objects from the same agents with net-snmp's own tools, as a shell
  poller would: per printer one `snmpget` of the scalars and one `snmpbulkget` of the table
  columns, `--concurrency` printers at once. Wall time, CPU per printer (the tools' processes),
  failures.

Both run twice, alternating, and the better round of each is printed, with the agents' CPU.
Without `--reactor`, the pcnet round also runs in a child process on Twisted's asyncio reactor
(the bridge then uses the reactor's own loop instead of a thread) and its figures are printed
beside. Target: a full round within 10 s, no false down.

    .venv/bin/python bench/bench_snmp.py [--printers 1000] [--agents 2] [--agent snmpsim|snmpd]
                                         [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RECORDING = ROOT / ".." / "shared" / "testdata" / "snmp" / "sharp.snmprec"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--printers", type=int, default=1000)
    p.add_argument("--agents", type=int, default=2)
    p.add_argument("--agent", choices=["snmpsim", "snmpd"], default="snmpsim",
                   help="the simulated printers: snmpsim (the recording itself) or net-snmp's "
                        "snmpd with the recording's values (fast: measures the pollers)")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--timeout", type=float, default=5.0, help="SNMP timeout per request (s)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--reactor", choices=["default", "asyncio"], default=None,
                   help="run only the pcnet round on this reactor (used for the child process)")
    p.add_argument("--targets", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the agents -----------------------------------------------------------------------------------

class Snmpd:
    """Debian's net-snmp agent serving the recording's values (`override` lines) under every
    community: much faster than snmpsim, so the round measures the pollers, not the agent.
    Its own host-resources modules are left out so the recording's hr* values stand."""

    TYPES = {"2": "integer", "4": "octet_str", "4x": "octet_str", "6": "object_id",
             "65": "counter", "66": "uinteger"}

    def __init__(self, workdir: Path, names):
        from pcnet.devices.testing.snmpsim import free_udp_port

        self.workdir = workdir / f"snmpd-{names[0]}"
        self.workdir.mkdir(parents=True)
        self.port = free_udp_port()
        lines = [f"agentAddress udp:127.0.0.1:{self.port}", "master no"]
        lines += [f"rocommunity {n} 127.0.0.1" for n in names]
        for line in RECORDING.read_text().splitlines():
            oid, kind, value = line.split("|", 2)
            if kind not in self.TYPES:
                continue  # IpAddress, TimeTicks: nothing the poller asks for
            if kind == "4x":
                value = "0x" + value
            elif kind == "4":
                value = '"' + value.replace('"', "'") + '"'
            lines.append(f"override .{oid} {self.TYPES[kind]} {value}")
        (self.workdir / "snmpd.conf").write_text("\n".join(lines) + "\n")
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            ["/usr/sbin/snmpd", "-f", "-C", "-c", str(self.workdir / "snmpd.conf"), "-Lf",
             str(self.workdir / "log"), "-u", "nobody", "-I",
             "-hr_device,hr_system,hr_storage,hr_disk,hr_filesys,hr_network,hr_print,hr_proc,"
             "hr_swinst,hrh_storage,hrh_filesys"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = subprocess.run(["snmpget", "-v2c", "-c", "p0000", "-t", "0.5", "-r", "0",
                                f"127.0.0.1:{self.port}", "1.3.6.1.2.1.43.10.2.1.4.1.1"],
                               capture_output=True, text=True)
            if "121104" in r.stdout or "No Such" in r.stdout:
                return
        raise RuntimeError("snmpd did not start")

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def start_agents(n_printers: int, n_agents: int, workdir: Path, kind: str = "snmpsim"):
    from pcnet.devices.testing.snmpsim import SnmpSimulator

    agents, targets = [], []
    per = (n_printers + n_agents - 1) // n_agents
    for a in range(n_agents):
        names = [f"p{i:04d}" for i in range(a * per, min(n_printers, (a + 1) * per))]
        if kind == "snmpd":
            sim = Snmpd(workdir, ["p0000"] + names)
        else:
            sim = SnmpSimulator(workdir, {name: RECORDING for name in names}, link=True)
        sim.start()
        agents.append(sim)
        targets += [(name, sim.port) for name in names]
    return agents, targets


# --- pcnet's round --------------------------------------------------------------------------------

async def pcnet_round(reactor, targets, concurrency, timeout) -> dict:
    from pcnet.devices import DeviceConfig, DeviceState, configure_device, find_drivers
    from pcnet.devices.testing import FakeCore

    drivers = find_drivers()
    core = FakeCore()
    devices = []
    for name, port in targets:
        config = configure_device(drivers, name, "snmp", {
            "host": "127.0.0.1", "port": port, "community": name, "timeout": timeout,
            "retries": 0, "down_after": 1, "poll_interval": 3600, "concurrency": concurrency})
        devices.append(drivers["snmp"].build(config, core.services_for(config), reactor))
    for d in devices:  # poller and loops in place; the first poll is the measured one
        d._poller = __import__("pcnet.devices.snmp", fromlist=["POLLERS"]).POLLERS.acquire(reactor, concurrency)
    # Warm up (not counted): one poll of another printer of the same agents.
    from twisted.internet import defer

    from pcnet.devices.snmp import POLLERS

    spare = drivers["snmp"].build(configure_device(drivers, "warm-up", "snmp", {
        "host": "127.0.0.1", "port": targets[0][1], "community": targets[0][0],
        "poll_interval": 3600}), core.services_for(DeviceConfig("warm-up", "snmp")), reactor)
    spare._poller = POLLERS.acquire(reactor, concurrency)
    await spare.poll()
    out = {}
    for kind in ("full", "steady"):
        cpu0, t0 = cpu_self(), time.perf_counter()
        readings = await defer.gatherResults([d.poll() for d in devices])
        wall, cpu = time.perf_counter() - t0, cpu_self() - cpu0
        down = sum(1 for d in devices if d._status.state is DeviceState.DOWN)
        wrong = sum(1 for r in readings
                    if r is None or r.counters.life != 121104 or len(r.supplies) != 14
                    or r.supplies[0].percent != 55)
        out[kind] = {"wall": wall, "cpu_per_printer_ms": 1000 * cpu / len(devices),
                     "false_down": down, "wrong_readings": wrong}
    for _ in range(len(devices) + 1):
        POLLERS.release(reactor)
    return out


def run_pcnet(targets, concurrency, timeout, reactor_name: str) -> dict:
    if reactor_name == "asyncio":
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        from twisted.internet import asyncioreactor

        asyncioreactor.install(loop)
    from twisted.internet import defer, reactor

    box = {}

    def main():
        d = defer.ensureDeferred(pcnet_round(reactor, targets, concurrency, timeout))
        d.addCallbacks(box.update, lambda f: box.update(error=f.getTraceback()))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(main)
    reactor.run()
    return box


# --- net-snmp's round -----------------------------------------------------------------------------

def netsnmp_commands(name, port):
    from pcnet.devices.printer_mib import oid_text, poll_plan

    plan = poll_plan(1)
    address = f"127.0.0.1:{port}"
    get = ["snmpget", "-v2c", "-c", name, "-t", "5", "-r", "0", "-Oqn", address,
           *[oid_text(o) for o in plan.scalars.values()]]
    bulk = ["snmpbulkget", "-v2c", "-c", name, "-t", "5", "-r", "0", "-Oqn", "-Cn0", "-Cr14",
            address, *[oid_text(o) for o in plan.columns.values()]]
    return get, bulk


def netsnmp_round(targets, concurrency) -> dict:
    def poll(target):
        ok = True
        for cmd in netsnmp_commands(*target):
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            ok = ok and r.returncode == 0 and "Timeout" not in r.stderr
        return ok

    cpu0, t0 = cpu_children(), time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(poll, targets))
    wall, cpu = time.perf_counter() - t0, cpu_children() - cpu0
    return {"wall": wall, "cpu_per_printer_ms": 1000 * cpu / len(targets),
            "failures": results.count(False)}


# --- the run ----------------------------------------------------------------------------------------

def child_round(args, targets, reactor_name):
    out = subprocess.run(
        [sys.executable, __file__, "--reactor", reactor_name, "--concurrency", str(args.concurrency),
         "--timeout", str(args.timeout), "--targets", json.dumps(targets)],
        capture_output=True, text=True, timeout=600)
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": out.stderr[-2000:]}


def main(argv=None):
    args = parse_args(argv)
    if args.reactor is not None:  # a child: one pcnet round, JSON out
        targets = [tuple(t) for t in json.loads(args.targets)]
        print(json.dumps(run_pcnet(targets, args.concurrency, args.timeout, args.reactor)))
        return
    workdir = Path(tempfile.mkdtemp(prefix="bench-snmp-"))
    os.chmod(workdir, 0o755)
    agents = []
    try:
        t0 = time.perf_counter()
        agents, targets = start_agents(args.printers, args.agents, workdir, args.agent)
        print(f"{args.printers} printers on {args.agents} {args.agent} agent(s), ready in "
              f"{time.perf_counter() - t0:.1f} s; concurrency {args.concurrency}; measured under "
              f"whatever load the machine has")
        best = {}
        for r in range(args.rounds):
            for kind in ("pcnet", "net-snmp"):
                agent_cpu0 = sum(proc_cpu(a.process.pid) for a in agents)
                if kind == "pcnet":
                    # A child process per round: a fresh reactor, and this process stays light.
                    result = child_round(args, targets, "default")
                else:
                    result = netsnmp_round(targets, args.concurrency)
                result["agents_cpu"] = sum(proc_cpu(a.process.pid) for a in agents) - agent_cpu0
                if "error" in result:
                    print(f"{kind}: failed: {result['error']}")
                    continue
                wall = result["full"]["wall"] if kind == "pcnet" else result["wall"]
                if kind not in best or wall < best[kind][0]:
                    best[kind] = (wall, result)
        on_asyncio = child_round(args, targets, "asyncio")
        print()
        print(f"{'':44} {'wall s':>7} {'CPU/printer ms':>15} {'failed/false down':>18}")

        def row(label, r):
            print(f"{label:44} {r['wall']:7.2f} {r['cpu_per_printer_ms']:15.2f} "
                  f"{r.get('false_down', r.get('failures', 0)):18d}")

        p = best.get("pcnet", (0, None))[1]
        n = best.get("net-snmp", (0, None))[1]
        if p:
            row("pcnet snmp driver, full poll (first round)", p["full"])
            row("pcnet snmp driver, steady round (levels)", p["steady"])
        if "full" in on_asyncio:
            row("  the same on the asyncio reactor, full", on_asyncio["full"])
            row("  the same on the asyncio reactor, steady", on_asyncio["steady"])
        elif on_asyncio.get("error"):
            print("pcnet on the asyncio reactor: failed:", on_asyncio["error"][-500:])
        if n:
            row("net-snmp snmpget + snmpbulkget, full objects", n)
        if p and n:
            print(f"\nthe agents' CPU: {p['agents_cpu']:.1f} s during pcnet's two rounds, "
                  f"{n['agents_cpu']:.1f} s during net-snmp's one")
            f = p["full"]
            print(f"pcnet full round / net-snmp: {f['wall'] / n['wall']:.2f} of the wall time, "
                  f"{f['cpu_per_printer_ms'] / n['cpu_per_printer_ms']:.2f} of the client CPU; "
                  f"readings with wrong values: {f['wrong_readings'] + p['steady']['wrong_readings']}")
            worst = max(f["wall"], p["steady"]["wall"])
            false_down = f["false_down"] + p["steady"]["false_down"]
            print(f"target: a full round within 10 s: {'met' if f['wall'] <= 10 else 'NOT met'} "
                  f"({f['wall']:.1f} s; steady {p['steady']['wall']:.1f} s, worst {worst:.1f} s); "
                  f"no false down: {'met' if false_down == 0 else f'NOT met ({false_down})'}")
    finally:
        for a in agents:
            a.stop()
        subprocess.run(["rm", "-rf", str(workdir)], check=False)


if __name__ == "__main__":
    main()
