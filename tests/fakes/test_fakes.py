"""Every fake provides the interface it stands in for, as the real part does."""

from twisted.internet.task import Clock
from zope.interface.verify import verifyClass, verifyObject

from pcnet.app.services import NodeSessions, Services
from pcnet.app.services.nodes import StoreNodeRegistry
from pcnet.interfaces import ICupsAdmin, ILineSession, INodeRegistry, INodeSessions
from pcnet.net.line import LineProtocol
from pcnet.provider.service import CupsControl
from tests.fakes import FakeCups, ProviderSession, ServerSession


def test_the_line_session_fakes_are_line_sessions_like_the_protocol():
    verifyObject(ILineSession, ProviderSession())
    verifyObject(ILineSession, ServerSession())
    verifyClass(ILineSession, LineProtocol)


def test_the_cups_fake_is_what_the_provider_asks_of_cups():
    verifyObject(ICupsAdmin, FakeCups())
    verifyClass(ICupsAdmin, CupsControl)


def test_node_sessions_and_the_store_registry_provide_their_interfaces():
    services = Services(None, Clock())
    verifyObject(INodeSessions, services.sessions)
    verifyObject(INodeSessions, NodeSessions({("provider", "p"): ProviderSession("p")}))
    verifyObject(INodeRegistry, services.nodes.registry())
    verifyClass(INodeRegistry, StoreNodeRegistry)


def test_the_inline_store_is_the_real_store_answering_at_once():
    from pcnet.interfaces import IStore
    from tests.fakes.store import inline_store

    clock = Clock()
    clock.advance(1_800_000_000)
    store = inline_store(clock)
    verifyObject(IStore, store)
    created = []
    store.create_user("ann").addCallback(created.append)
    assert created and created[0].username == "ann"   # fired before the call returned
    failed = []
    store.create_user("ann").addErrback(failed.append)
    assert failed and failed[0].value.code == "conflict"
    store.stop()
