"""Fixtures for integration tests that start real components.

Each fixture starts one real thing, bounded in time, under its own temporary directory, and
stops it by PID. They never skip: when a component is not installed the test fails with a
message that says what to install (CI installs everything; deselect locally with
`-m "not integration"`). Add fixtures for other components (PostgreSQL, SNMP agents) here.

CUPS: `cups_rig` is a private cupsd with the pcnet backend installed in its ServerBin and the
backend's PCNET_* settings pointing into the rig (see cups_rig.py); `fake_provider` answers on
the provider socket that backend uses.
"""

from __future__ import annotations

import os

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
