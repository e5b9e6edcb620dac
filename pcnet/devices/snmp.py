"""An SNMP client for printers and copiers: one poll = the plan's scalars and table columns,
in as few requests as the agent allows (v1, v2c, and v3 with authentication and privacy).

Twisted code calls `SnmpPoller.poll(target, plan)` and gets a Deferred of plain values. At most
`concurrency` polls are in flight at once (a `DeferredSemaphore`), whatever the number of
devices. Two carriers:

- SNMPv3 goes through pysnmp 7 (its USM does the authentication and privacy). pysnmp is
  asyncio-only: every pysnmp object lives on the loop of the `AsyncioBridge`
  (`pcnet.devices._asyncio`), which is the reactor's own loop under the asyncio reactor and a
  private loop thread under any other;
- SNMPv1 and v2c go through `WireClient`, a UDP protocol on the reactor with its own BER codec
  (`pcnet.devices._snmp_wire`), request ids, retransmission and timeouts: pysnmp's message
  layer costs about 20 ms of CPU per printer poll, this about 1 ms (bench/bench_snmp.py), which
  is the difference between a thousand printers a minute taking a core or not.

One request per poll where possible: for v2c and v3 a GETBULK whose non-repeaters are the
scalars (each asked as the GETNEXT of its lexicographic predecessor, so the answer is the
object itself if the agent has it, and anything else if not: "not reported") and whose
repeaters are the table columns; columns longer than one response are continued with more
GETBULKs. SNMPv1 has no GETBULK: the same with GETNEXT, one row at a time.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field

from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.protocol import DatagramProtocol

from pcnet.devices import _snmp_wire as wire

from pcnet.devices._asyncio import AsyncioBridge
from pcnet.devices.printer_mib import OID, PollPlan
from pcnet.errors import DeviceUnavailable, PcnetError

AUTH_PROTOCOLS = ("MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512")
PRIV_PROTOCOLS = ("DES", "3DES", "AES", "AES192", "AES256")
_MAX_SUBID = 4294967295


class SnmpTimeout(DeviceUnavailable):
    """No answer within the timeout and retries: a missed poll."""

    code = "snmp_timeout"


class SnmpError(PcnetError):
    """The agent answered with an error, or refused the request (e.g. unknown v3 user, wrong
    digest): the device is reachable but the poll failed."""

    code = "snmp_error"


class SnmpTooBig(SnmpError):
    """The agent's answer would not fit its buffer (error-status tooBig): ask for less."""

    code = "snmp_too_big"


def _status_error(t: SnmpTarget, status: int, index: int, text: str = "") -> SnmpError:
    if status == 1:
        return SnmpTooBig(f"{t.host}:{t.port}: tooBig")
    return SnmpError(f"{t.host}:{t.port}: {text or f'error-status {status}'} at varbind {index}")


@dataclass(frozen=True)
class SnmpTarget:
    """Where and how to ask. Secrets (community, keys) never appear in a repr."""

    host: str
    port: int = 161
    version: str = "2c"
    community: str = field(default="public", repr=False)
    user: str = ""
    auth_protocol: str = "SHA"
    auth_key: str = field(default="", repr=False)
    priv_protocol: str = "AES"
    priv_key: str = field(default="", repr=False)
    context: str = ""
    timeout: float = 2.0
    retries: int = 1
    max_varbinds: int = 48

    def __post_init__(self):
        if self.version not in ("1", "2c", "3"):
            raise ValueError("version must be 1, 2c or 3")
        if self.version == "3":
            if not self.user:
                raise ValueError("SNMPv3 needs a user")
            if self.priv_key and not self.auth_key:
                raise ValueError("SNMPv3 privacy (priv_key) needs authentication (auth_key)")
            for key in (self.auth_key, self.priv_key):
                if key and len(key) < 8:
                    raise ValueError("SNMPv3 keys are at least 8 characters")
        if self.auth_protocol not in AUTH_PROTOCOLS:
            raise ValueError(f"auth_protocol must be one of {', '.join(AUTH_PROTOCOLS)}")
        if self.priv_protocol not in PRIV_PROTOCOLS:
            raise ValueError(f"priv_protocol must be one of {', '.join(PRIV_PROTOCOLS)}")


def predecessor(o: OID) -> OID:
    """An OID just before `o` in lexicographic order, so GETNEXT of it answers `o` itself when
    the agent has `o` (no real OID sorts between them)."""
    if o[-1] > 0:
        return o[:-1] + (o[-1] - 1, _MAX_SUBID)
    return o[:-1]


# --- the asyncio side ---------------------------------------------------------------------------


class _Client:
    """Lives on the bridge's loop: the pysnmp engine and the transports, by target."""

    def __init__(self):
        from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

        self.engine = SnmpEngine()
        self._transports: dict = {}

    async def transport(self, t: SnmpTarget):
        from pysnmp.hlapi.v3arch.asyncio import UdpTransportTarget

        key = (t.host, t.port, t.timeout, t.retries)
        transport = self._transports.get(key)
        if transport is None:
            transport = await UdpTransportTarget.create((t.host, t.port), timeout=t.timeout,
                                                        retries=t.retries)
            if len(self._transports) > 100_000:
                self._transports.clear()
            self._transports[key] = transport
        return transport

    def close(self):
        try:
            self.engine.close_dispatcher()
        except Exception:
            pass


def _auth(t: SnmpTarget):
    import pysnmp.hlapi.v3arch.asyncio as h

    if t.version in ("1", "2c"):
        return h.CommunityData(t.community, mpModel=0 if t.version == "1" else 1)
    auth = {"MD5": h.usmHMACMD5AuthProtocol, "SHA": h.usmHMACSHAAuthProtocol,
            "SHA224": h.usmHMAC128SHA224AuthProtocol, "SHA256": h.usmHMAC192SHA256AuthProtocol,
            "SHA384": h.usmHMAC256SHA384AuthProtocol, "SHA512": h.usmHMAC384SHA512AuthProtocol}
    priv = {"DES": h.usmDESPrivProtocol, "3DES": h.usm3DESEDEPrivProtocol,
            "AES": h.usmAesCfb128Protocol, "AES192": h.usmAesCfb192Protocol,
            "AES256": h.usmAesCfb256Protocol}
    return h.UsmUserData(
        t.user, t.auth_key or None, t.priv_key or None,
        authProtocol=auth[t.auth_protocol] if t.auth_key else h.usmNoAuthProtocol,
        privProtocol=priv[t.priv_protocol] if t.priv_key else h.usmNoPrivProtocol)


_END = object()


def _plain(value):
    """A pysnmp value as a plain Python one: int, bytes, str; None for noSuchObject /
    noSuchInstance; _END for endOfMibView."""
    from pysnmp.proto import rfc1902, rfc1905

    if isinstance(value, rfc1905.EndOfMibView):
        return _END
    if isinstance(value, (rfc1905.NoSuchObject, rfc1905.NoSuchInstance, rfc1905.UnSpecified)):
        return None
    if isinstance(value, rfc1902.OctetString) and not isinstance(value, rfc1902.IpAddress):
        return bytes(value.asOctets())
    if isinstance(value, (rfc1902.Integer, rfc1902.Integer32, rfc1902.Counter32, rfc1902.Gauge32,
                          rfc1902.TimeTicks, rfc1902.Counter64, rfc1902.Unsigned32)):
        return int(value)
    return value.prettyPrint()


async def _request(client: _Client, t: SnmpTarget, non_repeaters: list[OID], columns: list[OID],
                   repetitions: int):
    """One GETBULK (GETNEXT for v1); the answers as [(oid, value)], scalars first."""
    import pysnmp.hlapi.v3arch.asyncio as h
    from pysnmp.proto import errind

    transport = await client.transport(t)
    binds = [h.ObjectType(h.ObjectIdentity(o)) for o in non_repeaters + columns]
    auth, context = _auth(t), h.ContextData(contextName=t.context)
    if t.version == "1":
        error, status, index, answers = await h.next_cmd(client.engine, auth, transport, context,
                                                         *binds, lookupMib=False)
    else:
        error, status, index, answers = await h.bulk_cmd(
            client.engine, auth, transport, context, len(non_repeaters), repetitions, *binds,
            lookupMib=False)
    if error is not None:
        if isinstance(error, errind.RequestTimedOut):
            raise SnmpTimeout(f"{t.host}:{t.port}: no SNMP answer within {t.timeout:g} s "
                              f"x {t.retries + 1}")
        raise SnmpError(f"{t.host}:{t.port}: {error}")
    if status and int(status):
        if t.version == "1" and int(status) == 2:  # noSuchName: a GETNEXT ran off the MIB's end
            return [], int(index)
        raise _status_error(t, int(status), int(index), status.prettyPrint())
    return [(tuple(vb[0]), _plain(vb[1])) for vb in answers], 0


async def _poll(request, t: SnmpTarget, plan: PollPlan):
    """One poll, whatever carries the requests: `await request(non_repeaters, columns,
    repetitions)` gives `([(oid, value)], bad_index)` (pysnmp on asyncio for v3, the wire
    client on Twisted for v1/v2c: both are awaitable from here)."""
    names = list(plan.scalars)
    wanted = [plan.scalars[n] for n in names]
    probes = list(plan.probes)
    scalars: dict = {n: None for n in names + probes}
    tables: dict = {name: {} for name in plan.columns}
    open_columns = {name: col for name, col in plan.columns.items()}
    cursor = dict(open_columns)
    first = True
    budget = t.max_varbinds
    for _ in range(1000):  # bounded: a table of a few thousand rows at most
        columns = list(open_columns)
        non_repeaters = ([predecessor(o) for o in wanted] + [plan.probes[p] for p in probes]
                         if first else [])
        room = max(1, budget - len(non_repeaters))
        repetitions = max(1, room // max(1, len(columns))) if columns else 0
        if plan.repetitions and first:
            repetitions = min(repetitions, plan.repetitions)
        if not non_repeaters and not columns:
            break
        try:
            answers, bad_index = await request(non_repeaters, [cursor[c] for c in columns],
                                               repetitions)
        except SnmpTooBig:
            # A small agent (many printers have a 484-byte buffer): ask for half as much,
            # and keep asking for that little for the rest of this poll.
            if repetitions <= 1:
                raise
            budget = max(len(non_repeaters) + len(columns), budget // 2)
            continue
        if bad_index:
            # SNMPv1: one GETNEXT ran off the end of the MIB (noSuchName) and the whole request
            # failed with it; leave that one out and ask again for the rest.
            k = bad_index - 1
            if k < len(wanted):
                del names[k], wanted[k]
            elif k < len(non_repeaters):
                del probes[k - len(wanted)]
            elif k - len(non_repeaters) < len(columns):
                del open_columns[columns[k - len(non_repeaters)]]
            else:
                break
            continue
        if first:
            for n, o, (got, value) in zip(names, wanted, answers):
                scalars[n] = value if got == o and value is not _END else None
            for n, (got, value) in zip(probes, answers[len(wanted):len(non_repeaters)]):
                prefix = plan.probes[n]
                scalars[n] = got[len(prefix):] if got[:len(prefix)] == prefix and value is not _END else None
            answers = answers[len(non_repeaters):]
            first = False
        for k, (got, value) in enumerate(answers):
            if not columns:
                break
            name = columns[k % len(columns)]
            if name not in open_columns:
                continue
            prefix = plan.columns[name]
            if value is _END or got[:len(prefix)] != prefix:
                del open_columns[name]
                continue
            tables[name][got[len(prefix):]] = value
            cursor[name] = got
        if not open_columns:
            break
    return scalars, tables


# --- SNMPv1/v2c on the reactor ----------------------------------------------------------------


class WireClient(DatagramProtocol):
    """SNMPv1/v2c requests over one UDP socket per address family, on the reactor: request ids,
    retransmission after `timeout` (`retries` times), answers matched by request id, sender
    and community. Malformed or unexpected datagrams are dropped and counted."""

    RESOLVE_EVERY = 300.0

    def __init__(self, reactor):
        self.reactor = reactor
        self._pending: dict[int, list] = {}
        self._next_id = random.randrange(1, 1 << 30)
        self._ports: dict[int, object] = {}
        self._addresses: dict[str, tuple[str, float]] = {}
        self.dropped = 0

    def _port(self, family: int):
        port = self._ports.get(family)
        if port is None:
            protocol = _Family(self)
            port = self.reactor.listenUDP(0, protocol, interface="::" if family == 6 else "")
            self._ports[family] = port
        return port

    async def _address(self, host: str) -> str:
        try:
            ipaddress.ip_address(host)
            return host
        except ValueError:
            pass
        known = self._addresses.get(host)
        now = self.reactor.seconds()
        if known is not None and now - known[1] < self.RESOLVE_EVERY:
            return known[0]
        try:
            ip = await self.reactor.resolve(host)
        except Exception as e:
            raise SnmpTimeout(f"{host}: cannot resolve the name: {e}") from None
        self._addresses[host] = (ip, now)
        return ip

    async def request(self, t: SnmpTarget, non_repeaters, columns, repetitions):
        ip = await self._address(t.host)
        family = 6 if ":" in ip else 4
        self._next_id = self._next_id % ((1 << 31) - 1) + 1
        rid = self._next_id
        oids = list(non_repeaters) + list(columns)
        if t.version == "1":
            payload = wire.encode_request("1", t.community, wire.GETNEXT, rid, oids)
        else:
            payload = wire.encode_request("2c", t.community, wire.GETBULK, rid, oids,
                                          len(non_repeaters), repetitions)
        d = Deferred()
        entry = [d, (ip, t.port), t.community.encode("utf-8"), payload, t.retries, None, t, family]
        self._pending[rid] = entry
        self._send(rid)
        version, status, index, binds = await d
        if status:
            if t.version == "1" and status == 2:  # noSuchName: a GETNEXT ran off the MIB's end
                return [], index
            raise _status_error(t, status, index)
        return [(o, _END if v is wire.END else v) for o, v in binds], 0

    def _send(self, rid: int) -> None:
        entry = self._pending.get(rid)
        if entry is None:
            return
        d, address, _, payload, retries, _, t, family = entry
        try:
            self._port(family).write(payload, address)
        except Exception as e:  # e.g. no route: as good as no answer, but say why
            del self._pending[rid]
            d.errback(SnmpTimeout(f"{t.host}:{t.port}: cannot send: {e}"))
            return
        entry[5] = self.reactor.callLater(t.timeout, self._timed_out, rid)

    def _timed_out(self, rid: int) -> None:
        entry = self._pending.get(rid)
        if entry is None:
            return
        if entry[4] > 0:
            entry[4] -= 1
            self._send(rid)
            return
        del self._pending[rid]
        t = entry[6]
        entry[0].errback(SnmpTimeout(f"{t.host}:{t.port}: no SNMP answer within {t.timeout:g} s "
                                     f"x {t.retries + 1}"))

    def received(self, data: bytes, address) -> None:
        try:
            version, community, rid, status, index, binds = wire.decode_response(data)
        except wire.WireError:
            self.dropped += 1
            return
        entry = self._pending.get(rid)
        if entry is None or entry[2] != community or tuple(address[:2]) != entry[1]:
            self.dropped += 1
            return
        del self._pending[rid]
        if entry[5] is not None and entry[5].active():
            entry[5].cancel()
        entry[0].callback((version, status, index, binds))

    def close(self) -> None:
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            if entry[5] is not None and entry[5].active():
                entry[5].cancel()
            entry[0].errback(SnmpTimeout("the SNMP client was closed"))
        for port in self._ports.values():
            port.stopListening()
        self._ports = {}


class _Family(DatagramProtocol):
    def __init__(self, client: WireClient):
        self.client = client

    def datagramReceived(self, data, address):
        self.client.received(data, address)


# --- the Twisted side -------------------------------------------------------------------------


class SnmpPoller:
    """Polls SNMP agents for Twisted code; at most `concurrency` polls at once."""

    def __init__(self, reactor, concurrency: int = 64):
        self.reactor = reactor
        self.bridge = AsyncioBridge(reactor)
        self._semaphore = DeferredSemaphore(concurrency)
        self._client: _Client | None = None
        self._wire: WireClient | None = None

    @property
    def concurrency(self) -> int:
        return self._semaphore.limit

    def set_concurrency(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("concurrency must be at least 1")
        s = self._semaphore
        s.tokens += limit - s.limit
        s.limit = limit
        while s.tokens > 0 and s.waiting:
            s.tokens -= 1
            s.waiting.pop(0).callback(s)

    async def _client_poll(self, t: SnmpTarget, plan: PollPlan):
        if self._client is None:
            self._client = _Client()
        client = self._client

        async def request(non_repeaters, columns, repetitions):
            return await _request(client, t, non_repeaters, columns, repetitions)

        return await _poll(request, t, plan)

    def _wire_poll(self, t: SnmpTarget, plan: PollPlan) -> Deferred:
        if self._wire is None:
            self._wire = WireClient(self.reactor)
        wire = self._wire

        def request(non_repeaters, columns, repetitions):
            return wire.request(t, non_repeaters, columns, repetitions)

        return Deferred.fromCoroutine(_poll(request, t, plan))

    def poll(self, target: SnmpTarget, plan: PollPlan) -> Deferred:
        """A Deferred of `(scalars, tables)` for `read_poll`; fails with `SnmpTimeout` (no
        answer: a missed poll) or `SnmpError`. SNMPv1 and v2c go through the wire client on
        the reactor; SNMPv3 through pysnmp on the asyncio bridge."""
        if target.version == "3":
            return self._semaphore.run(self.bridge.run, self._client_poll, target, plan)
        return self._semaphore.run(self._wire_poll, target, plan)

    def close(self) -> None:
        if self._wire is not None:
            self._wire.close()
            self._wire = None

        async def close():
            if self._client is not None:
                self._client.close()
                self._client = None

        if self._client is not None:
            self.bridge.close(close)
        else:
            self.bridge.close()


class SharedPollers:
    """One `SnmpPoller` per reactor, shared by every device that polls on it, closed when the
    last of them lets go (so tests and servers leave no loop thread behind)."""

    def __init__(self):
        self._pollers: dict[int, list] = {}

    @staticmethod
    def _key(reactor) -> int:
        # A device gets the runner's tracking proxy of the reactor; its pollers are shared by
        # the reactor underneath.
        return id(getattr(reactor, "_reactor", reactor))

    def acquire(self, reactor, concurrency: int) -> SnmpPoller:
        entry = self._pollers.get(self._key(reactor))
        if entry is None:
            # The poller outlives any one device: it must not use a device's tracking proxy,
            # whose sweep would close the poller's socket under the other devices.
            real = getattr(reactor, "_reactor", reactor)
            entry = self._pollers[self._key(reactor)] = [SnmpPoller(real, concurrency), 0]
        elif concurrency > entry[0].concurrency:
            entry[0].set_concurrency(concurrency)
        entry[1] += 1
        return entry[0]

    def release(self, reactor) -> None:
        key = self._key(reactor)
        entry = self._pollers.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del self._pollers[key]
            entry[0].close()


POLLERS = SharedPollers()
