"""Debian's snmpsim (`snmpsimd`) serving `.snmprec` recordings on loopback, for tests and benchmarks.

    with SnmpSimulator(tmp_path, {"sharp": SHARP_RECORDING}) as agent:
        target = SnmpTarget("127.0.0.1", agent.port, community="sharp")

Each recording is served under its name as the SNMPv1/v2c community and the SNMPv3 context
name; `v3=V3User(...)` adds an SNMPv3 user with authentication and privacy. snmpsimd runs as
`nobody` (it refuses root's files otherwise), on a free UDP port, and is stopped by its PID
when the block ends, whatever happened inside it. `recordings` values are paths (copied, or
linked for many names of one file) or the text of a recording.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SNMPSIMD = shutil.which("snmpsimd") or "/usr/bin/snmpsimd"


@dataclass(frozen=True)
class V3User:
    user: str
    auth_key: str
    priv_key: str
    auth_protocol: str = "SHA"
    priv_protocol: str = "AES"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available() -> bool:
    return os.path.exists(SNMPSIMD)


class SnmpSimulator:
    def __init__(self, workdir: Path, recordings: dict[str, Path | str], *, v3: V3User | None = None,
                 link: bool = False, start_timeout: float = 120.0):
        self.workdir = Path(workdir) / f"snmpsim-{os.getpid()}-{id(self):x}"
        self.recordings = recordings
        self.v3 = v3
        self.link = link
        self.start_timeout = start_timeout
        self.port = 0
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> SnmpSimulator:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        data, cache = self.workdir / "data", self.workdir / "cache"
        data.mkdir(parents=True)
        cache.mkdir()
        for name, source in self.recordings.items():
            target = data / f"{name}.snmprec"
            if isinstance(source, Path):
                if self.link:
                    target.symlink_to(source.resolve())
                else:
                    shutil.copyfile(source, target)
            else:
                target.write_text(source)
        nobody = pwd.getpwnam("nobody")
        for path in [self.workdir, data, cache, *data.iterdir()]:
            if not path.is_symlink():
                os.chown(path, nobody.pw_uid, nobody.pw_gid)
        # Every directory above the work dir must be searchable by nobody.
        for parent in self.workdir.parents:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, mode | 0o001)
        self.port = self.port or free_udp_port()  # a restart keeps its port
        args = [SNMPSIMD, f"--data-dir={data}", f"--cache-dir={cache}",
                f"--agent-udpv4-endpoint=127.0.0.1:{self.port}", "--process-user=nobody",
                "--process-group=nogroup", "--logging-method=file:" + str(self.workdir / "log")]
        if self.v3 is not None:
            args += [f"--v3-user={self.v3.user}", f"--v3-auth-key={self.v3.auth_key}",
                     f"--v3-auth-proto={self.v3.auth_protocol}",
                     f"--v3-priv-key={self.v3.priv_key}", f"--v3-priv-proto={self.v3.priv_protocol}"]
        log = self.workdir / "log"
        log.touch()
        os.chown(log, nobody.pw_uid, nobody.pw_gid)
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"snmpsimd exited: {self.log_tail()}")
            if "Listening at" in log.read_text(errors="replace"):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"snmpsimd did not start within {self.start_timeout:g} s: {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.workdir / "log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        p, self.process = self.process, None
        if p is not None and p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        shutil.rmtree(self.workdir, ignore_errors=True)


def set_counter(port: int, community: str, oid: str, value: int, host: str = "127.0.0.1") -> None:
    """SET a Counter32 on an agent (a recording's `writecache` object: a copier whose counters
    move). Blocking, on its own event loop: call it in a thread from Twisted code. net-snmp's
    `snmpset` cannot send a Counter32, and snmpsim refuses another type for a counter."""
    import asyncio

    import pysnmp.hlapi.v3arch.asyncio as h

    async def go():
        engine = h.SnmpEngine()
        try:
            transport = await h.UdpTransportTarget.create((host, port), timeout=2, retries=2)
            error, status, _, binds = await h.set_cmd(
                engine, h.CommunityData(community, mpModel=1), transport, h.ContextData(),
                h.ObjectType(h.ObjectIdentity(oid), h.Counter32(value)))
            if error or int(status):
                raise RuntimeError(f"SET {oid} failed: {error or status.prettyPrint()}")
        finally:
            engine.close_dispatcher()

    asyncio.run(go())
