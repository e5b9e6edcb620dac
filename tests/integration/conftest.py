"""Fixtures for integration tests that start real components.

Each fixture starts one real thing, bounded in time, under its own temporary directory, and
stops it by PID. They never skip: when a component is not installed the test fails with a
message that says what to install (CI installs everything; deselect locally with
`-m "not integration"`). Add fixtures for other components (PostgreSQL, SNMP agents) here.

CUPS: `cups_rig` is a private cupsd with the pcnet backend installed in its ServerBin and the
backend's PCNET_* settings pointing into the rig (see cups_rig.py); `fake_provider` answers on
the provider socket that backend uses.

Hosts (hosts.py, docs/testing.md): `hosts_run` is the session's harness run, made after a sweep
of what crashed runs left behind; a test module builds its `hosts.Network` on it (module scope,
so the hosts are built once per module) and the run closes whatever is still open at the end.
"""

from __future__ import annotations

import os
import sys

import hosts
import pytest
from cups_rig import INSTALL_HINT, CupsRig, FakeProvider, missing_tools


def _require_cups() -> None:
    missing = missing_tools()
    if missing:
        pytest.fail(f"CUPS integration tests need {', '.join(missing)}: {INSTALL_HINT}",
                    pytrace=False)
    if os.geteuid() != 0:
        pytest.fail("CUPS integration tests run a private cupsd, which must start as root "
                    "(its backends run as root or lp); run them as root or deselect them with "
                    '-m "not integration"', pytrace=False)


@pytest.fixture
def cups_rig():
    """A started private cupsd with the pcnet backend installed; no queues yet.
    `cups_rig.provider_socket` is where the backend looks for the Print Provider."""
    _require_cups()
    # A short provider wait, so that "provider down" tests see several retries in seconds.
    rig = CupsRig().use_pcnet(provider_wait=1, reply_timeout=15)
    try:
        rig.start()
        rig.install_pcnet_backend()
        yield rig
    finally:
        rig.cleanup()


@pytest.fixture
def fake_provider(cups_rig):
    """A scripted Print Provider on the rig's provider socket; answers "print" until told
    otherwise with `.answer(...)` or `.decide = ...`."""
    provider = FakeProvider(cups_rig.provider_socket).start()
    try:
        yield provider
    finally:
        provider.stop()


def _require_hosts() -> None:
    missing = hosts.missing_tools()
    if missing:
        pytest.fail(f"multi-host tests need {', '.join(missing)}: {hosts.INSTALL_HINT}, or deselect "
                    'them with -m "not integration"', pytrace=False)


@pytest.fixture(scope="session")
def hosts_run():
    """The session's harness run (hosts.Run). Before it starts, the leftovers of runs that
    died without cleaning up (their lock is free) are removed; at the end, everything the run
    still has open is closed."""
    _require_hosts()
    removed = hosts.sweep()
    if removed:
        sys.stderr.write("hosts: removed leftovers of an earlier run: " + ", ".join(removed) + "\n")
    run = hosts.Run.start()
    try:
        yield run
    finally:
        run.close()


@pytest.fixture(scope="module")
def network(hosts_run):
    """An empty network (a router, no sites yet) for this module; closed after its last test."""
    with hosts.Network(hosts_run) as net:
        yield net
