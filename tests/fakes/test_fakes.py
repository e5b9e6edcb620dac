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


def test_the_server_list_fakes_are_endpoints_and_line_sessions():
    from twisted.internet.interfaces import IStreamClientEndpoint

    from tests.fakes import FakeServer

    server = FakeServer("a")
    verifyObject(IStreamClientEndpoint, server)
    sessions = []
    server.connect(None).addCallback(sessions.append)
    verifyObject(ILineSession, sessions[0])
    failed = []
    FakeServer("b", "down").connect(None).addErrback(failed.append)
    assert failed and failed[0].check(Exception)


def test_the_change_listener_fake_and_the_real_listeners_are_change_listeners():
    from pcnet.interfaces import IChangeListener, IStore
    from pcnet.store._watch import PostgresChangeListener, SqliteChangeListener
    from tests.fakes.store import FakeChangeListener, GatedStore

    verifyObject(IChangeListener, FakeChangeListener())
    verifyClass(IChangeListener, SqliteChangeListener)
    verifyClass(IChangeListener, PostgresChangeListener)
    store = GatedStore()
    verifyObject(IStore, store)
    verifyObject(IChangeListener, store.change_listener(Clock(), interval=1))
    assert not store.starting.called       # the test releases its start
    store.stop()


def test_the_scripted_drivers_are_device_drivers_and_devices():
    from pcnet.devices import DeviceConfig
    from pcnet.interfaces import IDevice, IDeviceDriverFactory
    from tests.fakes.devices import ScriptedDriver

    driver = ScriptedDriver("scripted", start="hang")
    verifyObject(IDeviceDriverFactory, driver)
    device = driver.build(DeviceConfig("d1", "scripted"), None, Clock())
    verifyObject(IDevice, device)
    assert not device.start().called and device.status().called
