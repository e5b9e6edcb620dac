"""The `mfd` reference driver: an MFD with an embedded web panel, the way Sharp OSA, Xerox EIP,
Ricoh's Smart Operation Panel and HP Workpath work.

Two halves (docs/drivers.md shows where a vendor replaces each with their platform's):

- **Panel pages** the driver serves (`panel_resource()`, Klein) for the device's browser: sign
  in by card, card + PIN, or user name + password; the balance; held jobs to release; a shared
  account to charge; sign out. With `panel_key` set, every request must carry it (`?key=` or the
  `X-Pcnet-Panel-Key` header): only the device's browser, configured with it, gets the pages.
- **Device web services** the driver calls (HTTP Basic as the device's administrator): unlock
  copying for the signed-in user within what they can afford (pages and colour pages), lock it
  again at sign-out or after `idle_timeout` seconds without a panel request, and read the
  device's job log (copies, scans, faxes with pages, colour, duplex, paper size), recorded as
  usage under a uuid derived from the device's job, so a job log read twice is charged once.

One user at a time: a device has one panel. The job log is read at each sign-out and every
`joblog_interval` seconds.
"""

from __future__ import annotations

import hmac
import html
import json
import uuid as uuidlib
from dataclasses import dataclass, field
from decimal import Decimal

from klein import Klein
from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from pcnet.config import REQUIRED
from pcnet.devices import DeviceState, DeviceStatus, Usage, positive, setting
from pcnet.errors import DeviceUnavailable, InvalidInput, PcnetError
from pcnet.interfaces import IDevice, IDeviceDriverFactory

log = Logger(namespace="drivers.mfd")

_NAMESPACE = uuidlib.UUID("0b0d4a55-3f6e-4bd5-8d7b-5d6c8f0e9a21")
MAX_FIELD = 128


def _url(v):
    return None if v.startswith(("http://", "https://")) else "must be an http:// or https:// URL"


MFD_SETTINGS = (
    setting("url", str, REQUIRED, "base URL of the device's web services", check=_url),
    setting("admin", str, "admin", "the device administrator the driver signs in as"),
    setting("password", str, "", "that administrator's password", secret=True),
    setting("panel_key", str, "", "a key the device's browser sends with every panel request "
            "(empty: none)", secret=True),
    setting("idle_timeout", (int, float), 60, "seconds without a panel request after which the "
            "user is signed out and the device locked", check=positive),
    setting("joblog_interval", (int, float), 30, "seconds between readings of the job log",
            check=positive),
    setting("request_timeout", (int, float), 10, "seconds a call to the device may take",
            check=positive),
)


@dataclass
class PanelSession:
    identity: object
    accounts: list
    account_id: int
    device_session: str | None = None
    limits: tuple = (None, None)
    message: str = ""
    released: list = field(default_factory=list)


def _field(request, name) -> str:
    raw = request.args.get(name.encode(), [b""])[0]
    if len(raw) > MAX_FIELD:
        raise InvalidInput(f"{name}: at most {MAX_FIELD} characters", field=name)
    text = raw.decode("utf-8", "replace")
    if not text.isprintable():
        raise InvalidInput(f"{name}: printable text only", field=name)
    return text.strip()


def _page(title: str, body: str) -> bytes:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>").encode()


class _Panel:
    """The panel's Klein app, over one `Mfd` device."""

    app = Klein()

    def __init__(self, mfd: Mfd):
        self.mfd = mfd

    def _allowed(self, request) -> bool:
        key = self.mfd.settings.panel_key
        if not key:
            return True
        given = request.getHeader("x-pcnet-panel-key") or request.args.get(b"key", [b""])[0].decode("utf-8", "replace")
        return hmac.compare_digest(given.encode(), key.encode())

    def _guard(self, request):
        request.setHeader("content-type", "text/html; charset=utf-8")
        request.setHeader("cache-control", "no-store")
        if not self._allowed(request):
            request.setResponseCode(403)
            return _page("Not this panel", "<p>This page is for the device's panel.</p>")
        self.mfd.touch()
        return None

    @app.handle_errors(PcnetError)
    def refused(self, request, failure):
        # A bad field, a refused release, a device that does not answer: a page saying so,
        # never a 500 (the panel is a person's screen).
        request.setResponseCode(failure.value.http_status)
        return _page("Try again", f"<p>{html.escape(failure.value.message)}</p>"
                     "<p><a href='/panel'>Back</a></p>")

    @app.route("/panel", methods=["GET"])
    def sign_in_page(self, request):
        refused = self._guard(request)
        if refused:
            return refused
        if self.mfd.session is not None:
            return self.home_page(request)
        return _page("Sign in", (
            "<form method='post' action='sign-in'><p>Swipe your card, or type it"
            " <input name='card'> PIN <input name='pin' type='password'></p>"
            "<p>or user name <input name='username'> password"
            " <input name='password' type='password'></p><button>Sign in</button></form>"))

    @app.route("/panel/sign-in", methods=["POST"])
    async def sign_in(self, request):
        refused = self._guard(request)
        if refused:
            return refused
        card, pin = _field(request, "card"), _field(request, "pin")
        username, password = _field(request, "username"), _field(request, "password")
        try:
            await self.mfd.sign_in(card=card, pin=pin, username=username, password=password)
        except PcnetError as e:
            request.setResponseCode(401 if e.http_status == 401 else 409 if e.http_status < 500 else 503)
            return _page("Not signed in", f"<p>{html.escape(e.message)}</p><p><a href='/panel'>Back</a></p>")
        return self.home_page(request)

    @app.route("/panel/home", methods=["GET"])
    def home(self, request):
        refused = self._guard(request)
        if refused:
            return refused
        return self.home_page(request)

    def home_page(self, request):
        s = self.mfd.session
        if s is None:
            request.setResponseCode(401)
            return _page("Signed out", "<p><a href='/panel'>Sign in</a></p>")
        rows = "".join(
            f"<li><label><input type='radio' name='account' value='{a.id}'"
            f"{' checked' if a.id == s.account_id else ''}> {html.escape(a.name)}: "
            f"<span class='balance'>{a.balance}</span></label></li>" for a in s.accounts)
        jobs = "".join(
            f"<li class='job' data-uuid='{html.escape(j.uuid)}'>{html.escape(j.document_name)}, "
            f"{j.pages} page(s), {j.cost} <form method='post' action='release'>"
            f"<input type='hidden' name='job' value='{html.escape(j.uuid)}'><button>Release</button>"
            "</form></li>" for j in self.mfd.held)
        pages, colour = s.limits
        limit = ("no limit" if pages is None else f"up to {pages} page(s), {colour} in colour")
        message = f"<p class='message'>{html.escape(s.message)}</p>" if s.message else ""
        return _page(f"Hello {s.identity.full_name or s.identity.username}", (
            f"{message}<p class='limit'>Copying unlocked: {limit}</p>"
            f"<form method='post' action='account'><ul class='accounts'>{rows}</ul>"
            "<button>Charge this account</button></form>"
            f"<h2>Held jobs</h2><ul class='jobs'>{jobs or '<li>none</li>'}</ul>"
            "<form method='post' action='release'><input type='hidden' name='job' value='all'>"
            "<button>Release all</button></form>"
            "<form method='post' action='sign-out'><button>Sign out</button></form>"))

    @app.route("/panel/account", methods=["POST"])
    async def account(self, request):
        refused = self._guard(request)
        if refused:
            return refused
        raw = _field(request, "account")
        if not raw.isdigit():
            raise InvalidInput("account: choose one of the accounts listed", field="account")
        await self.mfd.choose_account(int(raw))
        return self.home_page(request)

    @app.route("/panel/release", methods=["POST"])
    async def release(self, request):
        refused = self._guard(request)
        if refused:
            return refused
        await self.mfd.release(_field(request, "job") or "all")
        return self.home_page(request)

    @app.route("/panel/sign-out", methods=["POST"])
    async def sign_out(self, request):
        refused = self._guard(request)
        if refused:
            return refused
        await self.mfd.sign_out("signed out")
        return _page("Signed out", "<p>Goodbye.</p><p><a href='/panel'>Sign in</a></p>")


def default_http(reactor):
    from treq.client import HTTPClient
    from twisted.web.client import Agent

    return HTTPClient(Agent(reactor))


@implementer(IDevice)
class Mfd:
    """The reference MFD driver's device (see the module doc). `http` is a treq-like client
    (`treq.client.HTTPClient`, or `treq.testing.StubTreq` over a simulated device)."""

    def __init__(self, device, services, reactor, http=None):
        self.device = device
        self.name = device.name
        self.services = services
        self.reactor = reactor
        self.settings = device.settings
        self.base = self.settings.url.rstrip("/")
        self.http = http if http is not None else default_http(reactor)
        self.session: PanelSession | None = None
        self.held: list = []
        self.last_seq = 0
        self._device_sessions: dict[str, tuple[int, int]] = {}  # device session -> user, account
        self._idle = None
        self._joblog = task.LoopingCall(self.read_joblog)
        self._joblog.clock = reactor
        self._reading: defer.Deferred | None = None
        self._state = DeviceStatus(DeviceState.STARTING, "starting")
        self._panel = _Panel(self)

    def panel_resource(self):
        """The panel pages (the core mounts them where the device's browser reaches them)."""
        return self._panel.app.resource()

    # --- the device's web services ---------------------------------------------------------------

    async def _call(self, method: str, path: str, body=None):
        import treq

        kw = {"auth": (self.settings.admin, self.settings.password)}
        if body is not None:
            kw["data"] = json.dumps(body).encode()
            kw["headers"] = {b"content-type": [b"application/json"]}
        try:
            d = self.http.request(method, self.base + path, **kw)
            d.addTimeout(float(self.settings.request_timeout), self.reactor)
            response = await d
            text = await treq.content(response)
        except Exception as e:
            self._state = DeviceStatus(DeviceState.DOWN, f"device web services unreachable: {type(e).__name__}")
            raise DeviceUnavailable(f"the device does not answer ({type(e).__name__})") from None
        if response.code == 401:
            self._state = DeviceStatus(DeviceState.ERROR, "the device refused the administrator's credentials")
            raise DeviceUnavailable("the device refused the driver's credentials")
        if response.code >= 400:
            self._state = DeviceStatus(DeviceState.ERROR, f"device web services: HTTP {response.code}")
            raise DeviceUnavailable(f"the device answered HTTP {response.code}")
        self._state = DeviceStatus(DeviceState.UP, "signed in: " + self.session.identity.username
                                   if self.session else "ready")
        try:
            return json.loads(text or b"{}")
        except ValueError:
            raise DeviceUnavailable("the device answered something that is not JSON") from None

    # --- IDevice ---------------------------------------------------------------------------

    async def _start(self):
        # Jobs done before the driver ran are not pcnet's to charge: start after the last.
        log_ = await self._call("GET", "/ws/v1/joblog?after=0")
        self.last_seq = int(log_.get("last", 0))
        self._joblog.start(float(self.settings.joblog_interval), now=False)

    def start(self):
        return defer.ensureDeferred(self._start())

    async def _stop(self):
        if self.session is not None:
            try:
                await self.sign_out("the driver stopped")
            except PcnetError:
                pass
        if self._joblog.running:
            self._joblog.stop()
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._state = DeviceStatus(DeviceState.STOPPED, "stopped")

    def stop(self):
        return defer.ensureDeferred(self._stop())

    def status(self):
        return defer.succeed(self._state)

    # --- sessions ----------------------------------------------------------------------------

    def touch(self):
        """A panel request: the idle timer starts again."""
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None
        if self.session is not None:
            self._idle = self.reactor.callLater(float(self.settings.idle_timeout), self._idle_out)

    def _idle_out(self):
        self._idle = None
        if self.session is not None:
            d = defer.ensureDeferred(self.sign_out("idle"))
            d.addErrback(lambda f: log.warn("mfd {name!r}: idle sign-out: {why}", name=self.name,
                                            why=f.getErrorMessage()))

    async def sign_in(self, *, card="", pin="", username="", password=""):
        if self.session is not None:
            await self.sign_out("another user signed in")
        if username:
            identity = await self.services.authenticate_password(username, password)
        elif card and pin:
            identity = await self.services.authenticate_card_pin(card, pin)
        elif card:
            identity = await self.services.authenticate_card(card)
        else:
            raise InvalidInput("swipe a card, or give a user name and password")
        accounts = await self.services.accounts(identity.user_id)
        self.session = PanelSession(identity, accounts, accounts[0].id)
        self.touch()
        try:
            self.held = await self.services.held_jobs(identity.user_id)
            await self._unlock()
        except PcnetError:
            self.session, self.held = None, []  # not signed in: the person may try again
            self.touch()
            raise
        log.info("mfd {name!r}: {user} signed in", name=self.name, user=identity.username)

    async def _limits(self, account) -> tuple:
        if account.available is None:
            return None, None
        uid = self.session.identity.user_id
        grey = await self.services.quote_usage(Usage("quote-grey-0", "copy", uid, 1))
        colour = await self.services.quote_usage(Usage("quote-colour-0", "copy", uid, 1, 1))
        available = max(Decimal(0), account.available)
        pages = int(available // grey) if grey > 0 else None
        colour_pages = int(available // colour) if colour > 0 else None
        return pages, colour_pages

    async def _unlock(self):
        s = self.session
        account = next(a for a in s.accounts if a.id == s.account_id)
        s.limits = await self._limits(account)
        if s.limits[0] == 0:
            s.message = f"{account.name} cannot pay for a copy; choose another account"
            s.device_session = None
            return
        reply = await self._call("POST", "/ws/v1/session", {
            "user": s.identity.username, "pages": s.limits[0], "colour_pages": s.limits[1]})
        s.device_session = str(reply.get("session", ""))[:128]
        self._device_sessions[s.device_session] = (s.identity.user_id, s.account_id)
        s.message = ""

    async def choose_account(self, account_id: int):
        s = self.session
        if s is None:
            raise InvalidInput("sign in first")
        if account_id not in {a.id for a in s.accounts}:
            raise InvalidInput("account: choose one of the accounts listed", field="account")
        if s.device_session is not None:
            await self._call("DELETE", "/ws/v1/session")
            await self.read_joblog()
        s.account_id = account_id
        await self._unlock()

    async def release(self, job: str):
        s = self.session
        if s is None:
            raise InvalidInput("sign in first")
        uid = s.identity.user_id
        wanted = [j for j in self.held if job in ("all", j.uuid)]
        messages = []
        for j in wanted:
            try:
                await self.services.release_job(uid, j.uuid)
                s.released.append(j.uuid)
            except PcnetError as e:
                messages.append(f"{j.document_name}: {e.message}")
        self.held = await self.services.held_jobs(uid)
        s.message = "; ".join(messages) if messages else (f"{len(wanted)} job(s) released" if wanted else "")

    async def sign_out(self, why: str):
        s, self.session = self.session, None
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None
        self.held = []
        if s is None:
            return
        if s.device_session is not None:
            try:
                await self._call("DELETE", "/ws/v1/session")
            finally:
                await self.read_joblog()
        log.info("mfd {name!r}: {user} signed out ({why})", name=self.name,
                 user=s.identity.username, why=why)

    # --- the job log ---------------------------------------------------------------------------

    def read_joblog(self):
        """Read and record the device's new jobs; a Deferred of how many were recorded. One
        reading at a time: a second call waits for the one in progress."""
        if self._reading is not None and not self._reading.called:
            from pcnet.devices import fork

            return fork(self._reading)
        self._reading = defer.ensureDeferred(self._read_joblog())
        self._reading.addErrback(lambda f: (log.warn("mfd {name!r}: reading the job log failed: {why}",
                                                     name=self.name, why=f.getErrorMessage()), 0)[1])
        return self._reading

    async def _read_joblog(self) -> int:
        reply = await self._call("GET", f"/ws/v1/joblog?after={self.last_seq}")
        recorded = 0
        for job in reply.get("jobs", []):
            seq = int(job["seq"])
            if seq <= self.last_seq:
                continue
            owner = self._device_sessions.get(str(job.get("session")))
            if owner is None:
                log.warn("mfd {name!r}: job {seq} belongs to no session pcnet opened; not charged",
                         name=self.name, seq=seq)
                self.last_seq = seq
                continue
            user_id, account_id = owner
            usage = Usage(
                str(uuidlib.uuid5(_NAMESPACE, f"{self.name}/{job.get('session')}/{seq}")),
                str(job["kind"]), user_id, int(job["pages"]), int(job.get("colour_pages", 0)),
                bool(job.get("duplex", False)), str(job.get("paper_size", "A4"))[:32],
                account_id, f"{job['kind']} at {self.name}")
            await self.services.record_usage(usage)  # a failure stops here: read again later
            self.last_seq = seq
            recorded += 1
        return recorded


@implementer(IPlugin, IDeviceDriverFactory)
class MfdDriver:
    name = "mfd"
    version = "1.0"
    description = "reference driver for MFDs with an embedded web panel (sign-in, release, copy accounting)"
    settings = MFD_SETTINGS

    def build(self, device, services, reactor):
        return Mfd(device, services, reactor)


mfd = MfdDriver()
