"""Benchmark: how long a WAN outage takes to be noticed, and the link to come back, on separate
hosts (tests/integration/hosts.py).

What is measured: an Application Server (centre host) and a Print Provider (print server host
at another site, its own cupsd), both `twistd` processes with pcnet/1 heartbeats every 1 s and
3 missed beats allowed. The site's WAN link is cut (`--kind silent`: nftables drops in the
router; `--kind link-down`: the WAN veth down) N times. For each cut, from the moment the cut is
in effect (`Outage.started`): when the provider logs that its link is down, and when the server
logs that the provider's link is down; after the restore (`Outage.ended`): when the provider
has reconnected and registered its printers again. Beside them, in the same run, the detection
time the settings promise (interval x missed beats). This is the baseline the Site Server's
detection benchmark (issue 8) is to beat: there the target is under 2 s.

The resolution of each figure is the polling interval (10 ms) plus the time to read a log.
Needs root (network namespaces, nftables).

    .venv/bin/python bench/bench_outage.py [--cuts 10] [--kind silent|link-down]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "integration"))

import hosts  # noqa: E402
from pcnet_deploy import AppServer, PrintServer  # noqa: E402

HEARTBEAT, MISSED = 1, 3  # as pcnet_deploy configures both sides
PROVIDER_DOWN = "link to the server is down"
SERVER_DOWN = "provider print01"  # ... 'is down: nothing received' lines name the node
REGISTERED = "registered "


def percentile(values: list[float], p: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def server_downs(app: AppServer) -> int:
    return sum(1 for line in app.log_text().splitlines() if SERVER_DOWN in line and " is down: " in line)


def measure(cuts: int, kind: str) -> dict[str, list[float]]:
    figures = {"provider notices": [], "server notices": [], "reconnected after restore": []}
    removed = hosts.sweep()
    if removed:
        print(f"hosts: removed leftovers of earlier runs: {', '.join(removed)}")
    run = hosts.Run.start()
    server = None
    try:
        net = hosts.Network(run)
        centre, site = net.add_site("centre"), net.add_site("site1")
        app_host, print_host = centre.add_host("app"), site.add_host("print1")
        app = AppServer(app_host.dir, host=app_host, auto_approve_networks=(str(site.subnet),)).start()
        server = PrintServer(print_host, app, node="print01", queues=["office"]).start()
        server.provider.wait_registered(1)
        cut, restore = (site.cut, site.restore) if kind == "silent" else (site.link_down, site.link_up)
        for n in range(cuts):
            provider_before = server.provider.log_text().count(PROVIDER_DOWN)
            server_before = server_downs(app)
            registered_before = server.provider.log_text().count(REGISTERED)
            outage = cut()
            seen: dict[str, float] = {}

            def noticed():
                now = time.monotonic() - outage.started
                if "provider" not in seen and server.provider.log_text().count(PROVIDER_DOWN) > provider_before:
                    seen["provider"] = now
                if "server" not in seen and server_downs(app) > server_before:
                    seen["server"] = now
                return len(seen) == 2

            hosts.wait_until(noticed, 60, "both sides to notice the outage", interval=0.01)
            restore()
            hosts.wait_until(lambda: server.provider.log_text().count(REGISTERED) > registered_before,
                             60, "the provider to reconnect", interval=0.01)
            back = time.monotonic() - outage.ended
            figures["provider notices"].append(seen["provider"])
            figures["server notices"].append(seen["server"])
            figures["reconnected after restore"].append(back)
            print(f"cut {n + 1}/{cuts}: provider {seen['provider']:.3f} s, server {seen['server']:.3f} s, "
                  f"back {back:.3f} s after the restore", flush=True)
    finally:
        if server is not None:
            server.close()
        run.close()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cuts", type=int, default=10)
    parser.add_argument("--kind", choices=("silent", "link-down"), default="silent")
    args = parser.parse_args()
    missing = hosts.missing_tools()
    if missing:
        raise SystemExit(f"bench_outage needs {', '.join(missing)}")
    figures = measure(args.cuts, args.kind)
    print(f"\n{args.cuts} WAN outages ({args.kind}), heartbeats every {HEARTBEAT} s, {MISSED} missed "
          f"beats: the settings promise detection in {HEARTBEAT * MISSED:.1f} s")
    print(f"{'':28} {'p50':>8} {'p99':>8} {'min':>8} {'max':>8}")
    for name, values in figures.items():
        print(f"{name:28} " + " ".join(f"{percentile(values, p):7.3f}s" for p in (50, 99))
              + f" {min(values):7.3f}s {max(values):7.3f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
