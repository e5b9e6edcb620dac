"""The `mfd` reference driver: a scripted panel (the device's browser) signs in, sees its
balance and held jobs, releases, picks a shared account and signs out, while the simulated MFD's
web services are unlocked within what the user can afford, locked again, and their job log is
charged as usage. In memory: StubTreq on both sides, task.Clock for the idle timeout."""

import pytest_twisted
from twisted.internet import task
from treq.testing import StubTreq

from drivers.mfd import Mfd
from pcnet.devices import DeviceState, configure_device, find_drivers
from pcnet.devices.testing import FakeCore
from pcnet.devices.testing.fake_mfd import FakeMfd, ScriptedPanel

PRINTER = 4


class Rig:
    def __init__(self, **settings):
        self.clock = task.Clock()
        self.mfd = FakeMfd(password="mfd-admin-secret")
        self.config = configure_device(find_drivers(), "mfd-1", "mfd", {
            "url": "https://mfd.invalid:8443", "password": "mfd-admin-secret",
            "idle_timeout": 60, **settings}, printer_id=PRINTER)
        self.core = FakeCore(self.clock)
        self.device = Mfd(self.config, self.core.services_for(self.config), self.clock,
                          http=StubTreq(self.mfd.resource()))
        self.panel = ScriptedPanel(StubTreq(self.device.panel_resource()),
                                   key=settings.get("panel_key", ""))

    async def __aenter__(self):
        await self.device.start()
        return self

    async def __aexit__(self, *exc):
        await self.device.stop()


@pytest_twisted.ensureDeferred
async def test_card_sign_in_unlocks_copying_within_the_balance_and_sign_out_charges_the_job_log():
    async with Rig() as rig:
        alice = rig.core.add_user("alice", card="C1", balance="2.00")
        code, page = await rig.panel.sign_in_card("C1")
        assert code == 200 and "Hello Alice" in page and "2.00" in page
        # 2.00 buys 20 grey copies at 0.10 or 4 colour at 0.50.
        assert (rig.mfd.session["pages"], rig.mfd.session["colour_pages"]) == (20, 4)
        rig.mfd.copy(5, colour_pages=1, duplex=True)
        rig.mfd.scan(3)
        code, page = await rig.panel.sign_out()
        assert code == 200 and rig.mfd.locked
        kinds = sorted((u.kind, u.pages, u.colour_pages, u.duplex) for _, u, _ in rig.core.usage.values())
        assert kinds == [("copy", 5, 1, True), ("scan", 3, 0, False)]
        assert all(u.user_id == alice.id for _, u, _ in rig.core.usage.values())
        # 4 grey and 1 colour duplex copies: 4 x 0.08 + 0.48; scans are free.
        assert str(rig.core.account_of(alice).balance) == "1.2000"


@pytest_twisted.ensureDeferred
async def test_card_and_pin_and_password_sign_ins_and_wrong_secrets():
    async with Rig() as rig:
        rig.core.add_user("bob", card="C2", pin="4321", password="hunter22")
        code, page = await rig.panel.sign_in_card("C2", pin="0000")
        assert code == 401 and rig.mfd.locked and "hunter22" not in page
        code, _ = await rig.panel.sign_in_card("C2", pin="4321")
        assert code == 200 and not rig.mfd.locked
        await rig.panel.sign_out()
        code, _ = await rig.panel.sign_in_password("bob", "wrong")
        assert code == 401 and rig.mfd.locked
        code, page = await rig.panel.sign_in_password("bob", "hunter22")
        assert code == 200 and "Hello Bob" in page
        assert ("authenticate_password", "mfd-1", "bob", "(secret)") in rig.core.calls


@pytest_twisted.ensureDeferred
async def test_held_jobs_are_listed_and_released_from_the_panel():
    async with Rig() as rig:
        carol = rig.core.add_user("carol", card="C3")
        first = rig.core.hold_job(carol, printer_id=PRINTER, document_name="thesis.pdf")
        second = rig.core.hold_job(carol, printer_id=PRINTER, document_name="slides.pdf")
        _, page = await rig.panel.sign_in_card("C3")
        assert "thesis.pdf" in page and "slides.pdf" in page
        _, page = await rig.panel.release(first)
        assert rig.core.jobs[first].status == "released" and rig.core.jobs[second].status == "held"
        assert "thesis.pdf" not in page
        await rig.panel.release("all")
        assert rig.core.jobs[second].status == "released"


@pytest_twisted.ensureDeferred
async def test_a_shared_account_is_charged_when_chosen():
    async with Rig() as rig:
        dan = rig.core.add_user("dan", card="C4", balance="0.00")
        physics = rig.core.add_shared_account("Physics", users=[dan])
        code, page = await rig.panel.sign_in_card("C4")
        assert "cannot pay for a copy" in page and rig.mfd.locked
        _, page = await rig.panel.choose_account(physics.id)
        assert not rig.mfd.locked and rig.mfd.session["pages"] is None  # unrestricted account
        rig.mfd.copy(10)
        await rig.panel.sign_out()
        (_, usage, receipt), = rig.core.usage.values()
        assert usage.account_id == physics.id and receipt.account_id == physics.id
        assert str(physics.balance) == "99.0000"
        code, _ = await rig.panel.post("/panel/account", account="999")
        assert code in (400, 401)


@pytest_twisted.ensureDeferred
async def test_an_idle_panel_signs_out_and_locks_the_device():
    async with Rig(idle_timeout=30) as rig:
        rig.core.add_user("erin", card="C5")
        await rig.panel.sign_in_card("C5")
        rig.mfd.copy(2)
        rig.clock.advance(29)
        await rig.panel.page("/panel/home")  # a request restarts the idle timer
        rig.clock.advance(29)
        assert not rig.mfd.locked
        rig.clock.advance(1)
        assert rig.mfd.locked and rig.device.session is None
        assert [u.pages for _, u, _ in rig.core.usage.values()] == [2]


@pytest_twisted.ensureDeferred
async def test_the_job_log_is_charged_once_however_often_it_is_read():
    async with Rig() as rig:
        rig.core.add_user("fay", card="C6", balance="50.00")
        await rig.panel.sign_in_card("C6")
        rig.mfd.copy(3)
        await rig.device.read_joblog()
        rig.device.last_seq = 0  # as after a restart that lost its place
        await rig.device.read_joblog()
        await rig.panel.sign_out()
        assert len(rig.core.usage) == 1
        assert [c for c in rig.core.calls if c[0] == "record_usage"].__len__() >= 2


@pytest_twisted.ensureDeferred
async def test_jobs_done_before_the_driver_started_are_not_charged():
    rig = Rig()
    rig.mfd.session = {"id": "old", "user": "x", "pages": None, "colour_pages": None, "used": 0,
                       "used_colour": 0}
    rig.mfd.copy(40)
    rig.mfd.session = None
    async with rig:
        assert rig.device.last_seq == 1
        await rig.device.read_joblog()
        assert rig.core.usage == {}


@pytest_twisted.ensureDeferred
async def test_a_device_that_refuses_the_drivers_credentials_fails_to_start():
    rig = Rig()
    rig.device.settings = configure_device(find_drivers(), "mfd-1", "mfd", {
        "url": "https://mfd.invalid", "password": "wrong"}).settings
    try:
        await rig.device.start()
    except Exception as e:
        assert e.code == "device_unavailable"
    else:
        raise AssertionError("start succeeded with wrong credentials")
    assert (await rig.device.status()).state is DeviceState.ERROR


@pytest_twisted.ensureDeferred
async def test_the_panel_key_keeps_other_browsers_out_and_fields_are_bounded():
    async with Rig(panel_key="panel-secret-1") as rig:
        rig.core.add_user("gus", card="C7")
        stranger = ScriptedPanel(rig.panel.stub, key="guess")
        code, _ = await stranger.sign_in_card("C7")
        assert code == 403 and rig.core.calls_of("authenticate_card") == []
        code, page = await rig.panel.post("/panel/sign-in", card="9" * 500)
        assert code == 400 and "at most" in page
        code, _ = await rig.panel.sign_in_card("C7")
        assert code == 200


@pytest_twisted.ensureDeferred
async def test_an_unknown_card_is_refused_on_the_panel():
    async with Rig() as rig:
        code, page = await rig.panel.sign_in_card("NOPE")
        assert code == 401 and rig.mfd.locked and rig.device.session is None


@pytest_twisted.ensureDeferred
async def test_a_device_that_stops_answering_gives_the_panel_an_error_page_not_a_500():
    async with Rig() as rig:
        rig.core.add_user("hana", card="C8")
        rig.mfd.available = False
        code, page = await rig.panel.sign_in_card("C8")
        assert code == 503 and "HTTP 503" in page and rig.device.session is None
        assert (await rig.device.status()).state is DeviceState.ERROR
        rig.mfd.available = True
        await rig.device.read_joblog()
        assert (await rig.device.status()).state is DeviceState.UP
        code, _ = await rig.panel.sign_in_card("C8")
        assert code == 200 and not rig.mfd.locked
