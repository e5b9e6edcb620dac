"""Fixtures for the device tests: the SNMP recordings served by a real snmpsim.

One snmpsimd per test module (it starts in well under a second) serves the shared recordings
(`../shared/testdata/snmp`: sharp, xerox) and `alerting`, a recording made here from the Sharp
one with a jammed state, an alert table and RFC 3805's special supply levels; SNMPv3 user
`pcnetv3` (SHA/AES) reaches every recording as its context name.
"""

from pathlib import Path

import pytest

from pcnet.devices.testing.snmpsim import SnmpSimulator, V3User

RECORDINGS = Path(__file__).resolve().parents[2] / ".." / "shared" / "testdata" / "snmp"
V3 = V3User("pcnetv3", "pcnet-auth-key-1", "pcnet-priv-key-1")


def alerting_recording() -> str:
    """The Sharp recording, jammed and down, with two alerts and special supply levels."""
    changed = {
        "1.3.6.1.2.1.25.3.2.1.5.1": "2|5",            # hrDeviceStatus down
        "1.3.6.1.2.1.25.3.5.1.2.1": "4x|0c00",        # doorOpen (0x08) and jammed (0x04)
        "1.3.6.1.2.1.43.11.1.1.9.1.1": "2|-3",        # cyan: some remaining
        "1.3.6.1.2.1.43.11.1.1.9.1.2": "2|-1",        # magenta: other
        "1.3.6.1.2.1.43.11.1.1.8.1.3": "2|-2",        # yellow: capacity unknown
    }
    lines = []
    for line in (RECORDINGS / "sharp.snmprec").read_text().splitlines():
        key = line.split("|", 1)[0]
        lines.append(f"{key}|{changed[key]}" if key in changed else line)
    alerts = [
        "1.3.6.1.2.1.43.18.1.1.2.1.1|2|3", "1.3.6.1.2.1.43.18.1.1.2.1.2|2|4",
        "1.3.6.1.2.1.43.18.1.1.4.1.1|2|13", "1.3.6.1.2.1.43.18.1.1.4.1.2|2|11",
        "1.3.6.1.2.1.43.18.1.1.7.1.1|2|8", "1.3.6.1.2.1.43.18.1.1.7.1.2|2|1104",
        "1.3.6.1.2.1.43.18.1.1.8.1.1|4|Paper jam in tray 2",
        "1.3.6.1.2.1.43.18.1.1.8.1.2|4|Black toner low",
    ]
    def key(line):
        return tuple(int(x) for x in line.split("|", 1)[0].split("."))
    return "\n".join(sorted(lines + alerts, key=key)) + "\n"


@pytest.fixture(scope="module")
def snmp_agent(tmp_path_factory):
    recordings = {"sharp": RECORDINGS / "sharp.snmprec", "xerox": RECORDINGS / "xerox.snmprec",
                  "alerting": alerting_recording()}
    with SnmpSimulator(tmp_path_factory.mktemp("snmp"), recordings, v3=V3) as agent:
        yield agent
