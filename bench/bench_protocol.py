"""Benchmark: pcnet/1 no-op requests per second over one TLS loopback connection.

Measures, in one process and one run, on 127.0.0.1:
- the full pcnet/1 stack: a node (`LineClientFactory`, `connect`) to the server listener
  (`MultiplexingFactory`: first-byte sniffing, TLS, ALPN, `LineServerFactory`), hello, then
  no-op requests with `in_flight` outstanding (JSON both ways, ids, dispatch, Deferreds);
- a bare TLS line echo, as /work/shared/baselines/tls_echo.py does it (LineReceiver both ends,
  the same request line shape, the same number in flight): the ceiling for TLS + framing.

It prints both rates and their ratio (the target is at least 0.25). Rounds alternate between
the two so that machine noise hits both; the best round of each is reported.

    .venv/bin/python bench/bench_protocol.py [--requests 100000] [--in-flight 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

from twisted.internet import defer, endpoints, protocol, ssl, task
from twisted.protocols.basic import LineReceiver
from twisted.web.resource import Resource
from twisted.web.server import Site

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pcnet.net import tls
from pcnet.net.line import (
    LineClientFactory,
    LineConfig,
    LineServerFactory,
    Operations,
    connect,
)
from pcnet.net.listener import MultiplexingFactory
from pcnet.net.registry import MemoryNodeRegistry

# --- the bare TLS line echo (as in the baseline) ------------------------------------------------


class Echo(LineReceiver):
    delimiter = b"\n"

    def lineReceived(self, line):
        self.sendLine(line)


class EchoClient(LineReceiver):
    delimiter = b"\n"

    def __init__(self, total, inflight, done):
        self.total, self.inflight, self.done = total, inflight, done
        self.sent = self.recv = 0

    def connectionMade(self):
        self.t0 = time.perf_counter()
        for _ in range(min(self.inflight, self.total)):
            self.send()

    def send(self):
        self.sent += 1
        self.sendLine(
            b'{"id":%d,"op":"job.decide","user":"alice","printer":"p1","pages":3}' % self.sent
        )

    def lineReceived(self, line):
        self.recv += 1
        if self.sent < self.total:
            self.send()
        elif self.recv == self.total:
            self.done.callback(time.perf_counter() - self.t0)


async def echo_round(reactor, ca_pem, cert_pem, key_pem, total, inflight) -> float:
    port = await endpoints.SSL4ServerEndpoint(
        reactor, 0, tls.server_tls_options(cert_pem, key_pem), interface="127.0.0.1"
    ).listen(protocol.Factory.forProtocol(Echo))
    try:
        done = defer.Deferred()
        ep = endpoints.wrapClientTLS(
            ssl.optionsForClientTLS("localhost", trustRoot=ssl.Certificate.loadPEM(ca_pem)),
            endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port),
        )
        client = await ep.connect(
            protocol.Factory.forProtocol(lambda: EchoClient(total, inflight, done))
        )
        elapsed = await done
        client.transport.loseConnection()
        return total / elapsed
    finally:
        await port.stopListening()


# --- the full pcnet/1 stack ---------------------------------------------------------------------


async def pcnet_round(reactor, ca_pem, cert_pem, key_pem, total, inflight) -> float:
    ops = Operations()

    @ops.op("job.decide")
    def noop(session, message):
        return {}

    registry = MemoryNodeRegistry(auto_approve_networks=["127.0.0.0/8"])
    config = LineConfig()
    line_factory = LineServerFactory(ops, registry, clock=reactor, config=config)
    mux = MultiplexingFactory(
        Site(Resource()),
        line_factory,
        tls.server_tls_options(cert_pem, key_pem, ca_pem),
        allow_plain=True,
        clock=reactor,
    )
    port = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(mux)
    try:
        endpoint = endpoints.wrapClientTLS(
            tls.client_tls_options("localhost", ca_pem),
            endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port),
        )
        factory = LineClientFactory(
            role="provider", node="bench", credential="x" * 43, clock=reactor, config=config
        )
        node = await connect(endpoint, factory)

        done = defer.Deferred()
        sent = received = 0
        t0 = 0.0
        request = node.request

        def on_reply(_):
            nonlocal sent, received
            received += 1
            if sent < total:
                sent += 1
                request("job.decide", user="alice", printer="p1", pages=3).addCallback(on_reply)
            elif received == total:
                done.callback(time.perf_counter() - t0)

        t0 = time.perf_counter()
        for _ in range(min(inflight, total)):
            sent += 1
            request("job.decide", user="alice", printer="p1", pages=3).addCallback(on_reply)
        elapsed = await done
        node.close()
        await node.when_closed()
        return total / elapsed
    finally:
        await port.stopListening()


async def main(reactor, args) -> None:
    ca_pem, ca_key = tls.create_ca("bench CA")
    cert_pem, key_pem = tls.issue_certificate(ca_pem, ca_key, ["localhost", "127.0.0.1"])
    # Warm up both paths (imports, first handshakes) before measuring.
    await echo_round(reactor, ca_pem, cert_pem, key_pem, 5000, args.in_flight)
    await pcnet_round(reactor, ca_pem, cert_pem, key_pem, 5000, args.in_flight)
    echo_rates, pcnet_rates = [], []
    for r in range(args.rounds):
        gc.collect()
        echo_rates.append(
            await echo_round(reactor, ca_pem, cert_pem, key_pem, args.requests, args.in_flight)
        )
        gc.collect()
        pcnet_rates.append(
            await pcnet_round(reactor, ca_pem, cert_pem, key_pem, args.requests, args.in_flight)
        )
        print(
            f"round {r + 1}: tls line echo {echo_rates[-1]:,.0f} req/s, "
            f"pcnet/1 {pcnet_rates[-1]:,.0f} req/s"
        )
    echo, pcnet = max(echo_rates), max(pcnet_rates)
    print(
        f"{args.requests} requests per round, {args.in_flight} in flight, best of {args.rounds}:"
    )
    print(f"  tls line echo:   {echo:10,.0f} req/s")
    print(f"  pcnet/1 no-op:   {pcnet:10,.0f} req/s")
    print(f"  ratio:           {pcnet / echo:10.2f} (target >= 0.25)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, args)))
