"""A fake core for drivers: users, cards, accounts, held jobs and a usage ledger in memory, and
the `IDeviceServices` it gives each device. What the conformance kit and the drivers' tests run
against; a vendor's tests can use it the same way.

    core = FakeCore()
    alice = core.add_user("alice", card="1234", pin="0000", password="pw", balance="5.00")
    job = core.hold_job(alice, printer_id=1, pages=3)
    services = core.services_for(DeviceConfig("hall", "card-reader", printer_id=1))

`core.calls` records every call a driver made (method, device, arguments without secrets);
`core.fail(method, error)` makes the next call of a method fail; `core.delay` (with `clock`)
makes every answer late, to catch a driver that does not cope with slow answers.
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal

from twisted.internet import defer, task
from zope.interface import implementer

from pcnet.devices._records import (
    AccountChoice,
    HeldJob,
    Identity,
    Usage,
    UsageReceipt,
)
from pcnet.devices._settings import DeviceConfig
from pcnet.domain.cost import job_cost
from pcnet.domain.model import CostModel
from pcnet.errors import (
    AccountDisabled,
    AuthenticationFailed,
    Conflict,
    Forbidden,
    InsufficientFunds,
    InvalidInput,
    NotFound,
    UnknownCard,
)
from pcnet.interfaces import IDeviceServices
from pcnet.money import quantize

#: Prices of a device's copies, scans and faxes in the fake core (grey, colour per side).
DEFAULT_PRICES = {
    "copy": CostModel(Decimal("0.10"), Decimal("0.50"), Decimal("0.02")),
    "scan": CostModel(Decimal("0.00"), Decimal("0.00")),
    "fax": CostModel(Decimal("0.05"), Decimal("0.05")),
}


@dataclass
class FakeUser:
    id: int
    username: str
    full_name: str
    cards: tuple[str, ...]
    pin: str | None
    password: str | None
    account_id: int
    disabled: bool = False


@dataclass
class FakeAccount:
    id: int
    name: str
    kind: str
    balance: Decimal
    restricted: bool = True
    overdraft: Decimal = Decimal("0")
    users: set = field(default_factory=set)
    disabled: bool = False

    def available(self) -> Decimal | None:
        return self.balance + self.overdraft if self.restricted else None


@dataclass
class FakeHeldJob:
    uuid: str
    user_id: int
    printer_id: int
    document_name: str
    pages: int
    colour_pages: int
    copies: int
    duplex: bool
    paper_size: str
    cost: Decimal
    status: str = "held"
    released_to: int | None = None
    created_at: datetime | None = None

    def record(self) -> HeldJob:
        return HeldJob(self.uuid, self.document_name, self.pages, self.colour_pages, self.copies,
                       self.duplex, self.paper_size, self.cost, self.status, "",
                       self.created_at)


@dataclass
class DeviceReports:
    statuses: list = field(default_factory=list)
    supplies: list = field(default_factory=list)
    counters: list = field(default_factory=list)
    alerts: list = field(default_factory=list)


_SECRET_ARGS = {"authenticate_card_pin": (1,), "authenticate_password": (1,)}


class FakeCore:
    def __init__(self, clock=None, *, delay: float = 0.0):
        self.clock = clock
        self.delay = delay
        self.users: dict[int, FakeUser] = {}
        self.accounts: dict[int, FakeAccount] = {}
        self.jobs: dict[str, FakeHeldJob] = {}
        self.usage: dict[str, tuple[str, Usage, UsageReceipt]] = {}
        self.printed: list[tuple[int, datetime, int]] = []
        self.reports: dict[str, DeviceReports] = {}
        self.prices: dict[str, CostModel] = dict(DEFAULT_PRICES)
        self.calls: list[tuple] = []
        self._failures: dict[str, list[Exception]] = {}
        self._next_id = 0

    # --- building the world -------------------------------------------------------------------

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def add_user(self, username: str, *, card: str | None = None, pin: str | None = None,
                 password: str | None = None, balance: str = "10.00", restricted: bool = True,
                 full_name: str = "") -> FakeUser:
        account = FakeAccount(self._id(), username, "personal", Decimal(balance), restricted)
        user = FakeUser(self._id(), username, full_name or username.title(),
                        (card,) if card else (), pin, password, account.id)
        account.users.add(user.id)
        self.accounts[account.id] = account
        self.users[user.id] = user
        return user

    def add_shared_account(self, name: str, *, balance: str = "100.00", users=(),
                           restricted: bool = False) -> FakeAccount:
        account = FakeAccount(self._id(), name, "shared", Decimal(balance), restricted,
                              users={u.id for u in users})
        self.accounts[account.id] = account
        return account

    def hold_job(self, user: FakeUser, *, printer_id: int, pages: int = 1, colour_pages: int = 0,
                 copies: int = 1, cost: str = "0.10", document_name: str = "document.pdf") -> str:
        job_uuid = str(uuidlib.uuid4())
        self.jobs[job_uuid] = FakeHeldJob(job_uuid, user.id, printer_id, document_name, pages,
                                          colour_pages, copies, False, "A4", Decimal(cost),
                                          created_at=self._now())
        return job_uuid

    def print_on(self, printer_id: int, pages: int, at: datetime | None = None) -> None:
        """Record that pcnet printed `pages` on a printer (what `printed_pages` counts)."""
        self.printed.append((printer_id, at or self._now(), pages))

    def fail(self, method: str, error: Exception, times: int = 1) -> None:
        """Make the next `times` calls of `method` fail with `error`."""
        self._failures.setdefault(method, []).extend([error] * times)

    def account_of(self, user: FakeUser) -> FakeAccount:
        return self.accounts[user.account_id]

    def released(self) -> list[FakeHeldJob]:
        return [j for j in self.jobs.values() if j.status == "released"]

    def services_for(self, device: DeviceConfig) -> FakeDeviceServices:
        self.reports.setdefault(device.name, DeviceReports())
        return FakeDeviceServices(self, device)

    def calls_of(self, method: str) -> list[tuple]:
        return [c for c in self.calls if c[0] == method]

    def _now(self) -> datetime:
        seconds = self.clock.seconds() if self.clock is not None else datetime.now(timezone.utc).timestamp()
        return datetime.fromtimestamp(seconds, tz=timezone.utc)

    # --- answering ------------------------------------------------------------------------------

    def _answer(self, method: str, device: DeviceConfig, args: tuple, fn):
        shown = tuple("(secret)" if i in _SECRET_ARGS.get(method, ()) else a
                      for i, a in enumerate(args))
        self.calls.append((method, device.name, *shown))
        failures = self._failures.get(method)
        if failures:
            d = defer.fail(failures.pop(0))
        else:
            d = defer.maybeDeferred(fn, *args)
        if self.delay and self.clock is not None:
            late = task.deferLater(self.clock, self.delay, lambda: None)
            late.addCallback(lambda _: d)
            return late
        return d

    def identity(self, user: FakeUser) -> Identity:
        return Identity(user.id, user.username, user.full_name, user.account_id)

    def _user(self, user_id: int) -> FakeUser:
        user = self.users.get(user_id)
        if user is None:
            raise NotFound(f"no user {user_id}")
        if user.disabled:
            raise AccountDisabled(f"user {user.username} is disabled")
        return user

    def choice(self, account: FakeAccount) -> AccountChoice:
        return AccountChoice(account.id, account.name, account.kind, account.balance,
                             account.available(), account.restricted)


@implementer(IDeviceServices)
class FakeDeviceServices:
    """`IDeviceServices` of one device, answered by a `FakeCore`."""

    def __init__(self, core: FakeCore, device: DeviceConfig):
        self.core = core
        self.device = device

    def _call(self, method, *args):
        return self.core._answer(method, self.device, args, getattr(self, "_" + method))

    # authentication
    def authenticate_card(self, card_number):
        return self._call("authenticate_card", card_number)

    def _authenticate_card(self, card_number):
        for user in self.core.users.values():
            if card_number in user.cards:
                if user.disabled:
                    raise AccountDisabled(f"user {user.username} is disabled")
                return self.core.identity(user)
        raise UnknownCard("no user holds this card")

    def authenticate_card_pin(self, card_number, pin):
        return self._call("authenticate_card_pin", card_number, pin)

    def _authenticate_card_pin(self, card_number, pin):
        identity = self._authenticate_card(card_number)
        if self.core.users[identity.user_id].pin is None or self.core.users[identity.user_id].pin != pin:
            raise AuthenticationFailed("wrong card or PIN")
        return identity

    def authenticate_password(self, username, password):
        return self._call("authenticate_password", username, password)

    def _authenticate_password(self, username, password):
        for user in self.core.users.values():
            if user.username == username and user.password is not None and user.password == password:
                if user.disabled:
                    raise AccountDisabled(f"user {user.username} is disabled")
                return self.core.identity(user)
        raise AuthenticationFailed("wrong user name or password")

    # money
    def balance(self, user_id):
        return self._call("balance", user_id)

    def _balance(self, user_id):
        return self.core.choice(self.core.accounts[self.core._user(user_id).account_id])

    def accounts(self, user_id):
        return self._call("accounts", user_id)

    def _accounts(self, user_id):
        user = self.core._user(user_id)
        out = [self.core.choice(self.core.accounts[user.account_id])]
        out += [self.core.choice(a) for a in self.core.accounts.values()
                if a.kind == "shared" and user.id in a.users and not a.disabled]
        return out

    def quote_usage(self, usage):
        return self._call("quote_usage", usage)

    def _cost(self, usage: Usage) -> Decimal:
        model = self.core.prices[usage.kind]
        return job_cost(model, pages=usage.pages, colour_pages=usage.colour_pages,
                        duplex=usage.duplex, copies=1, paper_size=usage.paper_size)

    def _quote_usage(self, usage):
        return self._cost(usage)

    # held jobs
    def held_jobs(self, user_id):
        return self._call("held_jobs", user_id)

    def _held_jobs(self, user_id):
        self.core._user(user_id)
        jobs = [j for j in self.core.jobs.values() if j.user_id == user_id and j.status == "held"
                and j.printer_id == self.device.printer_id]
        return [j.record() for j in sorted(jobs, key=lambda j: j.created_at)]

    def _job(self, user_id, job_uuid) -> FakeHeldJob:
        job = self.core.jobs.get(job_uuid)
        if job is None or job.user_id != user_id or job.printer_id != self.device.printer_id:
            raise NotFound(f"no held job {job_uuid} of this user at this printer")
        if job.status != "held":
            raise Conflict(f"job {job_uuid} is {job.status}, not held")
        return job

    def release_job(self, user_id, job_uuid):
        return self._call("release_job", user_id, job_uuid)

    def _release_job(self, user_id, job_uuid):
        job = self._job(user_id, job_uuid)
        account = self.core.accounts[self.core._user(user_id).account_id]
        available = account.available()
        if available is not None and job.cost > available:
            raise InsufficientFunds(f"{account.name} cannot afford {job.cost}")
        job.status, job.released_to = "released", self.device.printer_id
        return job.record()

    def cancel_job(self, user_id, job_uuid):
        return self._call("cancel_job", user_id, job_uuid)

    def _cancel_job(self, user_id, job_uuid):
        job = self._job(user_id, job_uuid)
        job.status = "cancelled"
        return job.record()

    # usage
    def record_usage(self, usage):
        return self._call("record_usage", usage)

    def _record_usage(self, usage):
        if not isinstance(usage, Usage):
            raise InvalidInput("usage: expected a pcnet.devices.Usage")
        seen = self.core.usage.get(usage.uuid)
        if seen is not None:
            _, first, receipt = seen
            if first != usage:
                raise Conflict(f"usage {usage.uuid} was recorded with other figures")
            return UsageReceipt(receipt.uuid, receipt.cost, receipt.account_id,
                                receipt.balance_after, repeated=True)
        user = self.core._user(usage.user_id)
        account_id = usage.account_id if usage.account_id is not None else user.account_id
        account = self.core.accounts.get(account_id)
        if account is None:
            raise NotFound(f"no account {account_id}")
        if user.id not in account.users:
            raise Forbidden(f"{user.username} may not charge {account.name}")
        cost = self._cost(usage)
        # It has happened: charged even past the limit (like a job printed offline).
        account.balance = quantize(account.balance - cost)
        receipt = UsageReceipt(usage.uuid, cost, account.id, account.balance)
        self.core.usage[usage.uuid] = (self.device.name, usage, receipt)
        return receipt

    def printed_pages(self, since, until):
        return self._call("printed_pages", since, until)

    def _printed_pages(self, since, until):
        return sum(p for printer, at, p in self.core.printed
                   if printer == self.device.printer_id and since <= at < until)

    # reports
    def _reports(self) -> DeviceReports:
        return self.core.reports.setdefault(self.device.name, DeviceReports())

    def report_status(self, status):
        return self._call("report_status", status)

    def _report_status(self, status):
        self._reports().statuses.append(status)

    def report_supplies(self, supplies):
        return self._call("report_supplies", supplies)

    def _report_supplies(self, supplies):
        self._reports().supplies.append(list(supplies))

    def report_counters(self, counters):
        return self._call("report_counters", counters)

    def _report_counters(self, counters):
        self._reports().counters.append(counters)

    def report_alerts(self, alerts):
        return self._call("report_alerts", alerts)

    def _report_alerts(self, alerts):
        self._reports().alerts.append(list(alerts))
