"""The Print Provider and the Application Server's provider operations talking real pcnet/1
over real TLS, in memory (`TLSMemoryBIOFactory`, `iosim`, `task.Clock`): hello, printer
registration, decisions, a hold released through the server and charged when it prints, Find-Me,
and the offline journal replayed when the link returns."""

from __future__ import annotations

import uuid as uuidlib
from decimal import Decimal

import pytest
from twisted.internet import defer, task

from tests.net._support import (CREDENTIAL, connect_in_memory, failure_of, make_pki, result_of,
                                tls_client, tls_server)
from pcnet.app.provider_ops import ProviderOps
from pcnet.app.services import SYSTEM, Services
from pcnet.domain.model import CostModel, FailureMode, HoldMode, JobStatus
from pcnet.net import tls
from pcnet.net.line import LineClientFactory, LineServerFactory, LinkDown, Operations
from pcnet.net.registry import MemoryNodeRegistry, NodeStatus
from pcnet.provider.journal import HeldJobs, OfflineJournal, PrinterCache
from pcnet.provider.service import PrintProvider, ServerLink

from tests.fakes import FakeCups
from tests.fakes.store import inline_store

D = Decimal


@pytest.fixture(scope="module")
def pki():
    return make_pki()


class Deployment:
    """An Application Server's services and provider operations on a store that answers at
    once (the real SQLite store, inline: tests.fakes.store), and one provider, linked by pcnet/1
    over in-memory TLS."""

    def __init__(self, tmp_path, pki):
        self.clock = task.Clock()
        self.clock.advance(1_800_000_000)
        self.store = inline_store(self.clock)
        self.services = Services(self.store, self.clock)
        self.server_ops = ProviderOps(self.services)
        registry = MemoryNodeRegistry()
        registry.add("provider", "print01", CREDENTIAL)
        self.registry = registry
        self.server_factory = LineServerFactory(self.server_ops.register(Operations()), registry,
                                                clock=self.clock, server_name="app1")
        self.services.sessions.attach(self.server_factory)
        self.server_options = tls.server_tls_options(pki.server_pem, pki.server_key_pem)
        self.client_options = tls.client_tls_options("pcnet.test", pki.ca_pem)

        self.cups = FakeCups({"office": "socket://10.0.0.5:9100", "secure": "socket://10.0.0.6:9100",
                              "findme": "socket://10.0.0.7:9100", "colour": "socket://10.0.0.8:9100"})
        self.spool = tmp_path / "spool"
        self.spool.mkdir()
        self.link = ServerLink(self.clock)
        j = tmp_path / "journal"
        self.analysis = {"pages": 4, "colour_pages": 1, "duplex": False, "copies": 1,
                         "paper_size": "A4", "error": None, "fallback": False}
        self.provider = PrintProvider(
            node="print01", clock=self.clock, link=self.link, cups=self.cups,
            analyse=lambda path: result_of_now(dict(self.analysis)),
            journal=OfflineJournal(j / "offline"), held=HeldJobs(j / "held"),
            printers=PrinterCache(j / "printers.json"), decision_timeout=5, spool_dir=self.spool)
        self.client_factory = LineClientFactory(role="provider", node="print01",
                                                credential=CREDENTIAL, clock=self.clock,
                                                ops=self.provider.operations())
        s = self.store
        cm = CostModel(grey=D("0.1000"), colour=D("0.5000"))
        self.alice = result_of(s.create_user("alice", initial_balance=D("10.0000")))
        self.printers = {
            "office": result_of(s.create_printer("office", server="print01", queue="office",
                                                 cost_model=cm, pdl="ps")),
            "secure": result_of(s.create_printer("secure", server="print01", queue="secure",
                                                 cost_model=cm, hold_mode=HoldMode.HOLD, pdl="ps")),
            "findme": result_of(s.create_printer("findme", server="print01", queue="findme",
                                                 cost_model=cm, hold_mode=HoldMode.FIND_ME,
                                                 pdl="ps", failure_mode=FailureMode.HOLD)),
            "colour": result_of(s.create_printer(
                "colour", server="print01", queue="colour", pdl="ps",
                cost_model=CostModel(grey=D("0.2000"), colour=D("1.0000")))),
        }
        self.pump = None

    def connect(self):
        server = tls_server(self.server_factory, self.server_options, self.clock)
        client = tls_client(self.client_factory, self.client_options, self.clock)
        self.pump = connect_in_memory(server, client, self.clock)
        self.pump.flush()
        proto = client.wrappedProtocol
        d = self.client_factory.prepare(proto)
        self.pump.flush()
        self.link.attach(result_of(d))
        self.flush()
        return proto

    def flush(self):
        for _ in range(20):
            self.pump.flush()

    def job(self, queue, job_id):
        spool = self.spool / f"{queue}-{job_id}.spool"
        spool.write_bytes(b"%!PS\n")
        d = self.provider.handle_job({"op": "job", "queue": queue, "job_id": job_id, "user": "alice",
                                      "title": "report", "copies": 1, "options": "",
                                      "spool": str(spool), "stdin": False})
        if self.pump is not None:
            self.flush()
        return result_of(d)

    def balance(self):
        return result_of(self.store.get_account(self.alice.personal_account_id)).balance


def result_of_now(value):
    from twisted.internet import defer

    return defer.succeed(value)


@pytest.fixture
def dep(tmp_path, pki):
    return Deployment(tmp_path, pki)


def test_hello_over_tls_registers_the_providers_queues(dep):
    dep.connect()
    assert dep.link.up
    assert dep.provider.printers.get("secure")["hold_mode"] == "hold"
    assert dep.provider.printers.get("office")["id"] == dep.printers["office"].id


def test_a_job_is_decided_and_charged_through_the_link(dep):
    dep.connect()
    assert dep.job("office", 1) == {"action": "print", "reason": ""}
    assert dep.balance() == D("9.2000")


def test_held_job_release_is_pushed_to_the_provider_and_charged_when_printed(dep):
    dep.connect()
    assert dep.job("secure", 2)["action"] == "hold"
    (held,), _ = result_of(defer.ensureDeferred(dep.services.held_jobs.list()))
    d = defer.ensureDeferred(dep.services.held_jobs.release(SYSTEM, held.uuid))
    dep.flush()
    assert result_of(d).status is JobStatus.RELEASED
    assert dep.cups.released == [2]
    assert dep.balance() == D("10.0000")  # not charged until it prints
    assert dep.job("secure", 2)["action"] == "print"  # CUPS runs the backend again
    dep.flush()
    assert dep.balance() == D("9.2000")
    assert result_of(dep.store.get_job(held.uuid)).status is JobStatus.PRINTED


def test_find_me_job_prints_at_the_chosen_printer_at_its_price(dep):
    dep.connect()
    assert dep.job("findme", 3)["action"] == "hold"
    (held,), _ = result_of(defer.ensureDeferred(dep.services.held_jobs.list()))
    d = defer.ensureDeferred(dep.services.held_jobs.release(SYSTEM, held.uuid,
                                                            printer=dep.printers["colour"].id))
    dep.flush()
    result_of(d)
    reply = dep.job("findme", 3)
    assert reply["device_uri"] == "socket://10.0.0.8:9100"
    dep.flush()
    assert dep.balance() == D("8.4000")  # 3 x 0.20 + 1 x 1.00 at "colour"


def test_jobs_printed_while_the_server_is_away_are_charged_once_when_it_is_back(dep):
    proto = dep.connect()
    proto.abort("outage")
    dep.flush()
    assert not dep.link.up
    assert dep.job("office", 4)["action"] == "print"
    assert dep.job("findme", 5)["action"] == "hold"  # failure mode hold
    assert dep.balance() == D("10.0000")
    dep.connect()
    # office job replayed and charged; the find-me job now has the server's decision: held.
    assert dep.balance() == D("9.2000")
    assert len(dep.provider.journal) == 0
    assert [r["state"] for r in dep.provider.held.all()] == ["held"]
    # A second outage and replay changes nothing.
    dep.connect()
    assert dep.balance() == D("9.2000")


def test_a_pending_provider_is_not_served_until_approved(dep):
    dep.registry.add("provider", "print01", CREDENTIAL, NodeStatus.PENDING)
    server = tls_server(dep.server_factory, dep.server_options, dep.clock)
    client = tls_client(dep.client_factory, dep.client_options, dep.clock)
    dep.pump = connect_in_memory(server, client, dep.clock)
    dep.pump.flush()
    d = dep.client_factory.prepare(client.wrappedProtocol)
    dep.flush()
    assert not d.called
    dep.registry.approve("provider", "print01")
    for _ in range(int(dep.client_factory.config.pending_retry) + 1):
        dep.clock.advance(1)  # heartbeats keep flowing while it waits
        dep.flush()
    # The server closed the pending connection after its auth_timeout; the node's next
    # connection (its ClientService makes one) says hello again and is served.
    failure_of(d, LinkDown)
    assert dep.connect().authenticated


def test_uuid_is_stable_across_the_journal(dep):
    dep.connect().abort("outage")
    dep.flush()
    dep.job("office", 6)
    ((_, _, record),) = dep.provider.journal.entries()
    uuidlib.UUID(record["uuid"])
    dep.connect()
    assert result_of(dep.store.get_job(record["uuid"])).status is JobStatus.PRINTED
