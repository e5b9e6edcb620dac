"""pcnet's SNMPv1/v2c wire client: its BER codec agrees with pyasn1 (pysnmp's codec) both ways,
refuses malformed datagrams cleanly, and the UDP client matches answers by request id, sender
and community, drops everything else, and retransmits until its timeout."""

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api
from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol

from pcnet.devices import _snmp_wire as wire
from pcnet.devices.snmp import SnmpTarget, SnmpTimeout, WireClient

V2 = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]

oids = st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=12).map(lambda rest: (1, 3) + tuple(rest))
values = st.one_of(
    st.integers(-2**31, 2**31 - 1).map(lambda v: (V2.Integer(v), v)),
    st.binary(max_size=300).map(lambda b: (V2.OctetString(b), b)),
    st.integers(0, 2**32 - 1).map(lambda v: (V2.Counter32(v), v)),
    st.integers(0, 2**32 - 1).map(lambda v: (V2.Gauge32(v), v)),
    st.integers(0, 2**64 - 1).map(lambda v: (V2.Counter64(v), v)),
    st.just((V2.Null(""), None)),
)


def response(binds, rid=42, community="public", status=0):
    pdu = V2.GetResponsePDU()
    V2.apiPDU.set_defaults(pdu)
    V2.apiPDU.set_request_id(pdu, rid)
    V2.apiPDU.set_error_status(pdu, status)
    V2.apiPDU.set_varbinds(pdu, binds)
    msg = V2.Message()
    V2.apiMessage.set_defaults(msg)
    V2.apiMessage.set_community(msg, community)
    V2.apiMessage.set_pdu(msg, pdu)
    return encoder.encode(msg)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(oids, values), max_size=40), st.integers(0, 2**31 - 1))
def test_responses_encoded_by_pyasn1_decode_to_the_same_values(binds, rid):
    data = response([(o, v[0]) for o, v in binds], rid=rid)
    version, community, got_rid, status, index, got = wire.decode_response(data)
    assert (version, community, got_rid, status) == (1, b"public", rid, 0)
    assert got == [(o, v[1]) for o, v in binds]


@settings(max_examples=200, deadline=None)
@given(st.lists(oids, min_size=1, max_size=30), st.integers(0, 2**31 - 1),
       st.integers(0, 30), st.integers(0, 100))
def test_requests_decode_with_pyasn1_to_what_was_asked(asked, rid, non_repeaters, repetitions):
    data = wire.encode_request("2c", "p0001", wire.GETBULK, rid, asked, non_repeaters, repetitions)
    msg, rest = decoder.decode(data, asn1Spec=V2.Message())
    assert rest == b""
    pdu = V2.apiMessage.get_pdu(msg)
    assert V2.apiBulkPDU.get_request_id(pdu) == rid
    assert (V2.apiBulkPDU.get_non_repeaters(pdu), V2.apiBulkPDU.get_max_repetitions(pdu)) == (
        non_repeaters, repetitions)
    assert [tuple(o) for o, _ in V2.apiBulkPDU.get_varbinds(pdu)] == asked


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_wire_error(data):
    try:
        wire.decode_response(data)
    except wire.WireError:
        pass


def test_truncated_and_overlong_messages_are_wire_errors():
    good = response([((1, 3, 6, 1, 2, 1, 1, 1, 0), V2.OctetString(b"printer"))])
    for cut in range(len(good)):
        with pytest.raises(wire.WireError):
            wire.decode_response(good[:cut])
    with pytest.raises(wire.WireError):
        wire.decode_response(b"\x30\x84\xff\xff\xff\xff" + good)


class Agent(DatagramProtocol):
    """A scripted agent: before answering properly it sends what a client must ignore."""

    def __init__(self, noise=True, silent=False):
        self.noise, self.silent, self.requests = noise, silent, 0

    def datagramReceived(self, data, address):
        self.requests += 1
        if self.silent:
            return
        msg, _ = decoder.decode(data, asn1Spec=V2.Message())
        rid = int(V2.apiPDU.get_request_id(V2.apiMessage.get_pdu(msg)))
        binds = [((1, 3, 6, 1, 2, 1, 43, 10, 2, 1, 4, 1, 1), V2.Counter32(121104))]
        if self.noise:
            self.transport.write(b"\x00garbage", address)
            self.transport.write(response(binds, rid=rid, community="wrong"), address)
            self.transport.write(response(binds, rid=rid + 1), address)
        self.transport.write(response(binds, rid=rid), address)


@pytest_twisted.ensureDeferred
async def test_answers_are_matched_and_everything_else_dropped():
    agent = Agent()
    port = reactor.listenUDP(0, agent, interface="127.0.0.1")
    client = WireClient(reactor)
    try:
        t = SnmpTarget("127.0.0.1", port.getHost().port, community="public", timeout=2)
        answers, bad = await client.request(t, [(1, 3, 6, 1, 2, 1, 43, 10, 2, 1, 4, 1, 0)], [], 0)
        assert answers == [((1, 3, 6, 1, 2, 1, 43, 10, 2, 1, 4, 1, 1), 121104)] and bad == 0
        assert client.dropped == 3
    finally:
        client.close()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_silent_agent_is_asked_again_then_times_out():
    agent = Agent(silent=True)
    port = reactor.listenUDP(0, agent, interface="127.0.0.1")
    client = WireClient(reactor)
    try:
        t = SnmpTarget("127.0.0.1", port.getHost().port, timeout=0.1, retries=2)
        with pytest.raises(SnmpTimeout):
            await client.request(t, [(1, 3, 6, 1)], [], 0)
        assert agent.requests == 3 and client._pending == {}
    finally:
        client.close()
        await port.stopListening()


class SmallAgent(DatagramProtocol):
    """An agent with a small buffer: tooBig for any GETBULK asking more than 2 repetitions,
    otherwise endOfMibView for everything (an empty agent)."""

    def __init__(self):
        self.repetitions = []

    def datagramReceived(self, data, address):
        msg, _ = decoder.decode(data, asn1Spec=V2.Message())
        pdu = V2.apiMessage.get_pdu(msg)
        rid = int(V2.apiBulkPDU.get_request_id(pdu))
        reps = int(V2.apiBulkPDU.get_max_repetitions(pdu))
        self.repetitions.append(reps)
        asked = [tuple(o) for o, _ in V2.apiBulkPDU.get_varbinds(pdu)]
        if reps > 2:
            self.transport.write(response([(o, V2.Null("")) for o in asked], rid=rid, status=1), address)
        else:
            self.transport.write(response([(o, V2.EndOfMibView()) for o in asked], rid=rid), address)


@pytest_twisted.ensureDeferred
async def test_a_too_big_answer_makes_the_poll_ask_for_less():
    from pcnet.devices.printer_mib import poll_plan
    from pcnet.devices.snmp import SnmpPoller

    agent = SmallAgent()
    port = reactor.listenUDP(0, agent, interface="127.0.0.1")
    poller = SnmpPoller(reactor)
    try:
        t = SnmpTarget("127.0.0.1", port.getHost().port, timeout=2, max_varbinds=48)
        scalars, tables = await poller.poll(t, poll_plan(1))
        assert all(v is None for v in scalars.values())
        assert agent.repetitions[0] > 2 and agent.repetitions[-1] <= 2
    finally:
        poller.close()
        await port.stopListening()
