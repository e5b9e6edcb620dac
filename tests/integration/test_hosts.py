"""The multi-host harness itself (hosts.py): hosts are separate network namespaces that reach
other sites only through the router; outages are silent (nftables drops) or loud (a veth down),
combine in any order and repeat; processes run inside their host and stop with their process
group; PostgreSQL runs inside a host; and nothing of a run is left after it, even when the run
crashed (the next sweep removes it) — while a live run is never touched.

One network is shared by the module's tests (each leaves it as it found it); the cleanup tests
build their own runs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import hosts
import pytest
from cups_rig import CupsRig
from hosts import HarnessError

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
BLOCKED = ("timeout", "unreachable")
FAST = 0.3  # a connection inside one machine takes well under a millisecond when nothing blocks it


@pytest.fixture(scope="module")
def topo(network):
    centre, site1, site2 = (network.add_site(n) for n in ("centre", "site1", "site2"))
    t = type("Topology", (), {})()
    t.net = network
    t.centre, t.site1, t.site2 = centre, site1, site2
    t.app, t.admin = centre.add_host("app"), centre.add_host("admin")
    t.print1, t.peer1 = site1.add_host("print1"), site1.add_host("peer1")
    t.print2 = site2.add_host("print2")
    t.listeners = {}
    for host in (t.app, t.print1, t.peer1, t.print2):
        server = host.socket()
        server.bind(("0.0.0.0", 0))
        server.listen(64)
        t.listeners[host.name] = server
    yield t
    for server in t.listeners.values():
        server.close()


def port_of(t, host) -> int:
    return t.listeners[host.name].getsockname()[1]


def accept_from(t, host, client: socket.socket) -> socket.socket:
    """The accepted end of `client`'s connection to `host` (earlier probes' connections are
    skipped)."""
    server = t.listeners[host.name]
    server.settimeout(5)
    wanted = client.getsockname()
    while True:
        conn, peer = server.accept()
        if peer == wanted:
            return conn
        conn.close()


def link_state(namespace: str, dev: str) -> str:
    out = subprocess.run(["ip", "-n", namespace, "-o", "link", "show", dev], capture_output=True,
                         text=True, check=True).stdout
    return out.split(" state ", 1)[1].split()[0]


def test_each_host_is_its_own_namespace_with_its_own_address_and_a_route_via_the_router(topo):
    t = topo
    names = {h.namespace for h in (t.app, t.admin, t.print1, t.peer1, t.print2)}
    assert len(names) == 5 and all(n.startswith(f"pcnh-{t.net.run.id}-") for n in names)
    assert set(hosts.namespaces()) >= names | {t.net.router.namespace}
    for host, site in ((t.app, t.centre), (t.print1, t.site1), (t.peer1, t.site1), (t.print2, t.site2)):
        assert host.address in site.subnet and host.address != site.gateway
        addrs = host.run(["ip", "-4", "-o", "addr", "show", "dev", "eth0"]).stdout
        assert f"{host.ip}/24" in addrs
        assert host.run(["ip", "route", "show", "default"]).stdout.split()[:3] == [
            "default", "via", str(site.gateway)]
        assert host.run(["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip() == "0"
    assert t.net.router.run(["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip() == "1"
    assert len({t.centre.subnet, t.site1.subnet, t.site2.subnet}) == 3
    # Nothing of the network is in this machine's own namespace.
    assert "10.77." not in subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout


def test_hosts_of_different_sites_talk_through_the_router_and_see_each_others_own_address(topo):
    t = topo
    with t.print2.connect(t.app.address, port_of(t, t.app)) as client:
        server_end = accept_from(t, t.app, client)
        with server_end:
            assert server_end.getpeername()[0] == t.print2.ip  # routed, not translated
            client.sendall(b"hello centre")
            assert server_end.recv(100) == b"hello centre"
    # Without the router's forwarding there is no way from site 2 to the centre...
    t.net.router.run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=0"])
    try:
        assert t.print2.probe(t.app.address, port_of(t, t.app), timeout=FAST) in BLOCKED
        # ...while hosts of one site still reach each other through their switch.
        assert t.print1.probe(t.peer1.address, port_of(t, t.peer1), timeout=FAST) == "open"
    finally:
        t.net.router.run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
    assert t.print2.probe(t.app.address, port_of(t, t.app)) == "open"


def test_a_silent_cut_drops_everything_without_a_word_and_the_connection_survives_it(topo):
    t = topo
    client = t.print1.connect(t.app.address, port_of(t, t.app))
    server_end = accept_from(t, t.app, client)
    try:
        outage = t.site1.cut()
        assert outage.kind == "silent" and t.site1.is_cut
        # No RST, no ICMP: attempts from either side just get no answer.
        assert t.print1.probe(t.app.address, port_of(t, t.app), timeout=FAST) == "timeout"
        assert t.app.probe(t.print1.address, port_of(t, t.print1), timeout=FAST) == "timeout"
        # The established connection neither breaks nor delivers.
        client.sendall(b"sent during the cut")
        server_end.settimeout(1)
        with pytest.raises(TimeoutError):
            server_end.recv(100)  # b"" would be a FIN, an exception a RST
        client.settimeout(0.2)
        with pytest.raises(TimeoutError):
            client.recv(100)
        # The link stays up; the site itself and the other sites carry on.
        assert link_state(t.net.router.namespace, t.site1.wan) == "UP"
        assert t.print1.probe(t.peer1.address, port_of(t, t.peer1)) == "open"
        assert t.print2.probe(t.app.address, port_of(t, t.app)) == "open"
        t.site1.restore()
        assert not t.site1.is_cut and outage.ended is not None
        # TCP retransmits what was sent during the cut.
        server_end.settimeout(20)
        assert server_end.recv(100) == b"sent during the cut"
        assert t.print1.probe(t.app.address, port_of(t, t.app)) == "open"
    finally:
        client.close()
        server_end.close()
        if t.site1.is_cut:
            t.site1.restore()


def test_a_site_link_down_takes_the_wan_veth_down_and_up_again_restores_traffic(topo):
    t = topo
    outage = t.site2.link_down()
    try:
        assert outage.kind == "link-down" and t.site2.is_down
        assert link_state(t.net.router.namespace, t.site2.wan) == "DOWN"
        # The router knows: it answers the centre with ICMP unreachable at once.
        assert t.app.probe(t.print2.address, port_of(t, t.print2), timeout=5) == "unreachable"
        assert t.print2.probe(t.app.address, port_of(t, t.app), timeout=FAST) in BLOCKED
    finally:
        t.site2.link_up()
    assert not t.site2.is_down
    assert t.app.probe(t.print2.address, port_of(t, t.print2)) == "open"
    assert t.print2.probe(t.app.address, port_of(t, t.app)) == "open"


def test_cuts_and_link_changes_combine_in_any_order_and_repeat(topo):
    t = topo
    site = t.site1
    steps = [  # (action, whether print1 reaches the centre afterwards)
        (site.cut, False), (site.link_down, False), (site.restore, False), (site.link_up, True),
        (site.link_down, False), (site.cut, False), (site.link_up, False), (site.restore, True),
    ]
    try:
        for _round in range(2):
            for action, reachable in steps:
                action()
                outcome = t.print1.probe(t.app.address, port_of(t, t.app), timeout=FAST)
                assert (outcome == "open") == reachable, (action.__name__, outcome)
        with pytest.raises(HarnessError, match="already cut"):
            site.cut(), site.cut()
        site.restore()
        with pytest.raises(HarnessError, match="not cut"):
            site.restore()
        with pytest.raises(HarnessError, match="not down"):
            site.link_up()
    finally:
        if site.is_cut:
            site.restore()
        if site.is_down:
            site.link_up()
    assert [o.kind for o in site.outages.history[-9:]] == [
        "silent", "link-down", "link-down", "silent"] * 2 + ["silent"]
    assert all(o.ended is not None for o in site.outages.history)


def test_a_host_cut_silences_one_host_even_to_its_own_site_and_its_link_goes_down_and_up(topo):
    t = topo
    t.print1.cut()
    try:
        assert t.peer1.probe(t.print1.address, port_of(t, t.print1), timeout=FAST) == "timeout"
        assert t.app.probe(t.print1.address, port_of(t, t.print1), timeout=FAST) == "timeout"
        assert t.peer1.probe(t.app.address, port_of(t, t.app)) == "open"  # the site's link is fine
    finally:
        t.print1.restore()
    assert t.peer1.probe(t.print1.address, port_of(t, t.print1)) == "open"
    t.print1.link_down()
    try:
        assert link_state(t.print1.namespace, "eth0") == "DOWN"
        assert t.print1.probe(t.app.address, port_of(t, t.app)) == "unreachable"  # the host knows
    finally:
        t.print1.link_up()
    assert t.print1.probe(t.app.address, port_of(t, t.app)) == "open"


def test_an_outage_tells_how_long_it_has_lasted_and_when_a_condition_came_true(topo):
    t = topo
    outage = t.site2.cut()
    try:
        assert outage.active and outage.target == "site site2"
        seen = outage.wait_for(
            lambda: t.print2.probe(t.app.address, port_of(t, t.app), timeout=FAST) == "timeout",
            timeout=10, what="a timed-out connection")
        assert 0 < seen <= outage.elapsed()
        first = outage.elapsed()
        time.sleep(0.05)
        assert outage.elapsed() > first
        with pytest.raises(HarnessError, match="timed out after 0.2 s waiting for never"):
            outage.wait_for(lambda: False, timeout=0.2, what="never")
    finally:
        t.site2.restore()
    assert not outage.active
    assert outage.elapsed() == outage.elapsed() == outage.ended - outage.started
    assert t.site2.outages.history[-1] is outage


def test_a_process_runs_inside_its_host_with_its_log_captured_and_stops_with_its_group(topo):
    t = topo
    process = t.print2.spawn("sleepers", ["sh", "-c", "echo started in $(hostname -I); "
                                          "sleep 300 & sleep 300"])
    try:
        hosts.wait_until(lambda: "started" in process.log_text(), 10, "the process's first line")
        assert t.print2.ip in process.log_text()
        members = hosts.wait_until(lambda: [p for p in t.print2.pids() if p != process.pid]
                                   and t.print2.pids(), 10, "the background child")
        assert process.pid in members and len(members) == 3  # sh and its two sleeps
        ns_inode = os.stat(hosts.NETNS_DIR / t.print2.namespace).st_ino
        assert {os.stat(f"/proc/{pid}/ns/net").st_ino for pid in members} == {ns_inode}
        process.pause()
        status = process.stop(timeout=5)  # a paused group still stops
        assert status == -signal.SIGTERM
        assert not any(hosts._alive(pid) for pid in members)
        assert t.print2.pids() == []
        process.start()  # again, into the same log
        hosts.wait_until(lambda: process.log_text().count("started") == 2, 10, "the second start")
        assert process.kill() == -signal.SIGKILL
        hosts.wait_until(lambda: t.print2.pids() == [], 5, "the group to be gone")
    finally:
        process.stop()


def test_postgres_runs_inside_the_centre_and_serves_its_own_subnet_only(topo):
    t = topo
    pg = hosts.Postgres(t.app).start()
    try:
        url = pg.create_database("harness")
        assert url == f"postgresql://postgres@{t.app.ip}:{pg.port}/harness"
        assert pg.psql("SELECT inet_server_addr()", "harness", from_host=t.admin).strip() == t.app.ip
        assert pg.psql("SELECT inet_client_addr()", "harness", from_host=t.admin).strip() == t.admin.ip
        with pytest.raises(HarnessError, match="no pg_hba.conf entry"):
            pg.psql("SELECT 1", "harness", from_host=t.print1)
        assert pg.process.pid in t.app.pids()
    finally:
        pg.close()
    assert not pg.process.alive and not pg.dir.exists()
    assert not [p for p in t.app.pids()]


def _build_everything(run: hosts.Run) -> dict:
    """One of each thing the harness makes, with outages in place."""
    net = hosts.Network(run)
    centre, site = net.add_site("centre"), net.add_site("site1")
    app, printer = centre.add_host("app"), site.add_host("print1")
    pg = hosts.Postgres(app).start()
    sleeper = printer.spawn("sleeper", ["sleep", "300"])
    rig = CupsRig(host=printer).start()
    rig.add_printer("fake")
    site.cut()
    printer.cut()
    app.link_down()
    return {"net": net, "pg": pg, "rig": rig,
            "pids": [pg.process.pid, sleeper.pid, rig.process.pid] + app.pids() + printer.pids()}


def test_teardown_leaves_no_namespace_process_rule_cluster_or_file_behind():
    run = hosts.Run.start()
    things = _build_everything(run)
    before = run.leftovers()
    assert any(f.startswith("namespace ") for f in before)
    assert any(f.startswith("process ") for f in before)
    assert things["net"].router.run(["nft", "list", "tables"]).stdout.strip()
    assert things["pg"].data_dir.exists()
    run.close()
    assert run.leftovers() == []
    assert not any(hosts._alive(pid) for pid in things["pids"])
    assert not [ns for ns in hosts.namespaces() if ns.startswith(f"pcnh-{run.id}-")]
    assert not hosts.processes_mentioning(str(run.dir))
    assert not [t for t in hosts._nft_tables() if t.startswith(f"pcnh_{run.id}")]
    assert not run.dir.exists() and not (hosts.STATE_ROOT / f"{run.id}.lock").exists()


_CRASHING_RUN = textwrap.dedent("""
    import json, os, signal, sys
    sys.path.insert(0, sys.argv[1])
    import hosts, test_hosts
    run = hosts.Run.start()
    things = test_hosts._build_everything(run)
    print(json.dumps({"run": run.id, "pids": things["pids"]}), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no finalizer, no atexit: a crash
""")


def test_a_crashed_runs_leftovers_are_swept_and_live_runs_are_left_alone(topo):
    child = subprocess.run([sys.executable, "-c", _CRASHING_RUN, str(HERE)],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr
    crashed = json.loads(child.stdout)
    left = hosts.leftovers(crashed["run"], pids=crashed["pids"])
    assert any(f.startswith("namespace ") for f in left) and any(f.startswith("process ") for f in left)
    assert any(f.startswith("lock file") for f in left) and any(f.startswith("directory") for f in left)
    live = hosts.Run.start()  # another live run, beside the session's
    try:
        mine = hosts.Network(live).add_site("mine").add_host("kept")
        removed = hosts.sweep()
        assert any(crashed["run"] in r for r in removed)
        assert hosts.leftovers(crashed["run"], pids=crashed["pids"]) == []
        assert not any(hosts._alive(pid) for pid in crashed["pids"])
        # The live runs (this one and the session's) keep everything.
        assert mine.namespace in hosts.namespaces() and live.dir.exists()
        assert topo.print1.probe(topo.app.address, port_of(topo, topo.app)) == "open"
        assert not [r for r in hosts.sweep() if live.id in r or topo.net.run.id in r]
    finally:
        live.close()
    assert live.leftovers() == []
