"""The Print Provider role: `twistd -n pcnet provider --config PATH` on a CUPS print server.

It is the middle of the chain CUPS queue -> pcnet backend -> provider -> server:

- the **backend listener**: the pcnet CUPS backend connects to a Unix socket with one JSON line
  per job (docs/cups.md); the provider analyses the spool file in a bounded thread pool, asks
  its server for a decision (`job.submit` over pcnet/1) and answers `print`, `deny`, `hold` or
  `cancel`, with a `device_uri` to print elsewhere (Find-Me);
- the **link** to its server: pcnet/1 over TLS, the server's certificate verified against the
  deployment CA, kept up by a `ServerList` (pcnet.net.failover: the servers of `[server] servers`
  in order, fail over and back, backoff); a new node is pending until an
  administrator approves it (logged, and the hello is repeated);
- on every (re)connect it **registers** the CUPS queues it manages (those whose device URI is
  `pcnet:...`) and learns each printer's id, hold mode and failure mode (cached on disk), replays
  its **offline journal**, settles jobs held while the server was away, and catches up on
  releases and cancellations it missed;
- the **failure mode** of each printer, when no server answers within `decision_timeout`:
  `print-log-later` (print; journal the job durably and report it with `job.offline` when the
  link returns), `print-no-log` (print, never charged), `hold` (hold in CUPS; ask for the
  decision when the link returns, then release or cancel the CUPS job). A job over the server's
  job limits (learned with each printer, cached) never prints offline: it is denied, or under
  `hold` held for the server to decide;
- the **journal quarantine**: a journal entry the server refuses, or fails on, for a reason
  other than being unavailable is set aside with its error (logged, reported to the server with
  `journal.quarantined`), never dropped, and never blocks the entries behind it; the server's
  `journal.retry` (an administrator's request) puts it back;
- **hold/release and Find-Me**: a job the server holds stays held in CUPS (the backend exits
  HOLD); the server pushes `job.release` (optionally with a target queue: Find-Me) or
  `job.cancel`; a release marks the job released and releases it in CUPS, the backend runs again,
  and this time the provider answers `print` (with the target queue's original device URI for
  Find-Me) and reports `job.printed`, which is when the server charges it.

`PrintProvider` holds the logic and takes its collaborators (link, CUPS control, analyser, clock,
journals) as arguments, so the unit tests drive it with fakes and `task.Clock`.
"""

from __future__ import annotations

import json
import os
import re
import stat
import threading
import uuid as uuidlib
from pathlib import Path

from twisted.application.internet import StreamServerEndpointService, TimerService
from twisted.application.service import MultiService, Service
from twisted.internet import defer, endpoints
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.protocol import Factory
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.threadpool import ThreadPool

from zope.interface import implementer

from pcnet.domain.decision import DEFAULT_LIMITS, check_limits
from pcnet.domain.model import DEFAULT_PAPER_SIZE, FailureMode, HoldMode, JobLimits
from pcnet.errors import ConfigError, Conflict, InvalidInput, NotFound, PcnetError
from pcnet.interfaces import ICupsAdmin
from pcnet.net import messages as M
from pcnet.net.failover import Server, ServerList
from pcnet.net.line import LineClientFactory, LineConfig, LinkDown, Operations, RemoteError
from pcnet.net.registry import new_credential
from pcnet._files import private_directory, write_durably
from pcnet.provider.journal import HeldJobs, OfflineJournal, PrinterCache

log = Logger(namespace="pcnet.provider")

#: The reply to the backend when something of pcnet's own fails: nothing is lost, an
#: administrator can release the job in CUPS (the backend then asks again).
_INTERNAL_HOLD = {"action": "hold", "reason": "pcnet provider internal error; see its log"}

#: A job CUPS runs again within this many seconds of a decision (the printer's backend asked for a
#: retry, or failed and the queue's error policy retried it) keeps its uuid, so the server's
#: idempotent record charges it once. A reprint after that is a new job, charged again.
RETRY_WINDOW = 600.0
_RECENT_MAX = 10_000

_SIDES = re.compile(r"(?:^|\s)sides=([A-Za-z-]+)")
_NO_ANSWER = (LinkDown, defer.TimeoutError, CancelledError)

#: Error codes by which a server says it cannot take a request *now* (rather than that the
#: request is wrong): a journal flush stops and tries again later, as when no server answers.
SERVER_UNAVAILABLE = frozenset({"busy", "store_unavailable", "unavailable", "not_authenticated"})

#: What a journal entry may report; anything else in the journal is quarantined unsent.
JOURNAL_OPS = (M.JobOffline.OP, M.JobPrinted.OP)

#: Fields a journal record must not carry: the line protocol's own (a record with `re` would
#: be taken for a reply and never answered) and the link's `timeout`.
_RESERVED_FIELDS = frozenset({"op", "id", "re", "ok", "timeout"})

#: Bounds of what a quarantine report carries (within the server's limits for
#: journal.quarantined, `pcnet.net.messages.JournalQuarantined`).
_REPORT_MESSAGE = M.MAX_QUARANTINE_MESSAGE
_REPORT_RECORD = M.MAX_QUARANTINED_RECORD - 4096


# --- the link to the server ----------------------------------------------------------------------


class ServerLink:
    """The provider's current approved pcnet/1 session, or none.

    `request()` fails at once with `LinkDown` when there is no session (a job must not wait for
    a reconnect that may take minutes), and with `defer.TimeoutError` when the server does not
    answer within `timeout` seconds.
    """

    def __init__(self, clock):
        self.clock = clock
        self.session = None
        self._on_up: list = []

    @property
    def up(self) -> bool:
        s = self.session
        return s is not None and getattr(s, "connected", True)

    def when_up(self, callback) -> None:
        """Call `callback()` after every (re)connection."""
        self._on_up.append(callback)

    def attach(self, session) -> None:
        self.session = session
        closed = session.when_closed() if hasattr(session, "when_closed") else None
        if closed is not None:
            closed.addCallback(self._closed, session)
        for callback in self._on_up:
            callback()

    def detach(self, session=None) -> None:
        if session is None or self.session is session:
            self.session = None

    def _closed(self, why, session) -> None:
        if self.session is session:
            log.warn("link to the server is down: {why}", why=why)
            self.session = None

    def request(self, op: str, *, timeout: float | None = None, **fields) -> Deferred:
        if not self.up:
            return defer.fail(LinkDown("not connected to the server"))
        d = self.session.request(op, **fields)
        if timeout is not None:
            d.addTimeout(timeout, self.clock)
        return d


# --- CUPS ------------------------------------------------------------------------------------------


@implementer(ICupsAdmin)
class CupsControl:
    """The provider's CUPS operations (pycups through `pcnet.provider.cupsadmin`), each run in a
    one-thread pool with a per-thread connection (pycups' server setting is per thread). Every
    method returns a Deferred."""

    def __init__(self, reactor, pool: ThreadPool, server: str | None):
        self._reactor = reactor
        self._pool = pool
        self._server = server
        self._local = threading.local()

    def _call(self, fn, *args):
        from pcnet.provider import cupsadmin

        def run():
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = cupsadmin.connect(self._server)
            try:
                return fn(conn, *args)
            except cupsadmin.CupsError:
                # cupsd may have restarted: one more try on a new connection.
                self._local.conn = None
                conn = self._local.conn = cupsadmin.connect(self._server)
                return fn(conn, *args)

        return deferToThreadPool(self._reactor, self._pool, run)

    def managed_queues(self) -> Deferred:
        from pcnet.provider import cupsadmin

        return self._call(lambda conn: [q for q in cupsadmin.list_queues(conn) if q.wrapped])

    def queue(self, name: str) -> Deferred:
        from pcnet.provider import cupsadmin

        return self._call(cupsadmin.get_queue, name)

    def release(self, job_id: int) -> Deferred:
        from pcnet.provider import cupsadmin

        return self._call(cupsadmin.release_job, int(job_id))

    def cancel(self, job_id: int) -> Deferred:
        from pcnet.provider import cupsadmin

        return self._call(cupsadmin.cancel_job, int(job_id))


# --- spool analysis --------------------------------------------------------------------------------


def analyse_spool(path: str, limits=None, paper_size: str = DEFAULT_PAPER_SIZE) -> dict:
    """Analyse a spool file (runs in a thread) within *limits* (a `pcnet.spool.Limits`, the
    `[analysis]` settings), assuming *paper_size* (`[analysis] paper_size`) for a file that
    states none. Never raises: a file that cannot be analysed gets the analysis's documented
    fallback (pcnet.spool), and that is logged."""
    try:
        from pcnet.spool import analyse

        a = analyse(path, limits=limits, default_paper=paper_size)
    except Exception as e:  # a bug or a missing analyser: fall back, never crash the provider
        # The same fallback as pcnet.spool's own: one page, counted as colour.
        log.error("spool analysis of {path} failed ({error}); charging it as 1 colour page",
                  path=path, error=f"{type(e).__name__}: {e}")
        return {"pages": 1, "colour_pages": 1, "duplex": False, "copies": 1,
                "paper_size": "unknown", "error": str(e), "fallback": True}
    result = {
        "pages": int(getattr(a, "pages", 1) or 0),
        "colour_pages": int(getattr(a, "colour_pages", 0) or 0),
        "duplex": bool(getattr(a, "duplex", False)),
        "copies": int(getattr(a, "copies", 1) or 1),
        "paper_size": getattr(a, "paper_size", None) or paper_size,
        "error": getattr(a, "error", None),
        "fallback": bool(getattr(a, "fallback", False)),
        "limits_hit": list(getattr(a, "limits_hit", ())),
    }
    if result["limits_hit"]:
        log.warn("spool file {path} hit the analysis limits {limits} ({error}): {pages} pages "
                 "x {copies} copies, {colour} colour", path=path,
                 limits=",".join(result["limits_hit"]), error=result["error"],
                 pages=result["pages"], copies=result["copies"], colour=result["colour_pages"])
    elif result["error"] or result["fallback"]:
        log.warn("spool file {path} could not be fully analysed ({error}); using the fallback: "
                 "{pages} pages, {colour} colour", path=path, error=result["error"],
                 pages=result["pages"], colour=result["colour_pages"])
    return result


def duplex_from_options(options: str) -> bool | None:
    """What the job's IPP `sides` option asks for, if anything (it wins over the analysis)."""
    m = _SIDES.search(options or "")
    if not m:
        return None
    return m.group(1).startswith("two-sided")


# --- the provider ------------------------------------------------------------------------------------


class PrintProvider:
    """The Print Provider's logic. See the module docstring.

    - `link`: a `ServerLink`;
    - `cups`: a `CupsControl` (or a fake with the same methods);
    - `analyse`: `path -> Deferred[dict]` (the analysis, run in a thread by the service);
    - `journal`, `held`, `printers`: `OfflineJournal`, `HeldJobs`, `PrinterCache`.
    """

    def __init__(self, *, node: str, clock, link: ServerLink, cups, analyse, journal: OfflineJournal,
                 held: HeldJobs, printers: PrinterCache, decision_timeout: float = 10.0,
                 default_failure_mode: FailureMode = FailureMode.PRINT_LOG_LATER,
                 spool_dir: str | os.PathLike | None = None,
                 paper_size: str = DEFAULT_PAPER_SIZE):
        self.node = node
        self.clock = clock
        self.link = link
        self.cups = cups
        self.analyse = analyse
        self.journal = journal
        self.held = held
        self.printers = printers
        self.decision_timeout = decision_timeout
        self.default_failure_mode = default_failure_mode
        self.spool_dir = os.path.realpath(spool_dir) if spool_dir else None
        # The paper of a job whose analysis found none ([analysis] paper_size).
        self.paper_size = paper_size
        self._sync: Deferred | None = None
        self._sync_again = False
        self._sync_register = False
        self._recent: dict[tuple[str, int], tuple[str, float]] = {}
        link.when_up(self.link_up)

    # --- operations the server pushes (pcnet/1, server -> provider) ----------------------------

    def operations(self) -> Operations:
        ops = Operations()
        ops.register(M.JobRelease.OP, lambda session, msg: Deferred.fromCoroutine(self.op_release(msg)))
        ops.register(M.JobCancel.OP, lambda session, msg: Deferred.fromCoroutine(self.op_cancel(msg)))
        ops.register(M.JournalRetry.OP, lambda session, msg: self.op_journal_retry(msg))
        return ops

    async def op_release(self, msg: dict) -> dict:
        push = M.JobRelease.parse(msg)
        record = self.held.get(push.uuid)
        if record is None:
            raise NotFound(f"no held job {push.uuid} on provider {self.node}")
        await self._release(record, push.target_queue, push.target_printer_id)
        return {}

    async def op_cancel(self, msg: dict) -> dict:
        push = M.JobCancel.parse(msg)
        record = self.held.get(push.uuid)
        if record is None:
            return {"known": False}  # already gone: cancelling is idempotent
        await self._cancel(record, push.reason)
        return {"known": True}

    def op_journal_retry(self, msg: dict) -> dict:
        """The server asks (for an administrator) that quarantined entries be sent again: they
        go back into the journal, in their old place, and the journal is replayed now."""
        keys = M.JournalRetry.parse(msg).keys
        restored = [k for k in keys if self.journal.restore(k)]
        unknown = [k for k in keys if k not in restored]
        if restored:
            log.info("the server asked to retry quarantined journal entries {keys}",
                     keys=", ".join(restored))
            self._kick()
        return {"restored": restored, "unknown": unknown}

    async def _release(self, record: dict, target_queue, target_printer_id) -> None:
        device_uri = None
        if target_queue and target_queue != record["queue"]:
            queue = await self.cups.queue(str(target_queue))
            device_uri = queue.original_uri
        # Marked released (durably) before CUPS runs the backend again, which asks about it.
        self.held.update(record["uuid"], state="released", device_uri=device_uri,
                         target_queue=target_queue or None,
                         target_printer_id=target_printer_id,
                         report=record.get("report", True))
        try:
            await self.cups.release(record["job_id"])
        except Conflict as e:
            # CUPS says the job is finished (cancelled in CUPS by hand): nothing will print.
            self.held.delete(record["uuid"])
            raise NotFound(f"CUPS job {record['job_id']} on {record['queue']}: {e.message}") from None
        except NotFound as e:
            self.held.delete(record["uuid"])
            raise NotFound(f"CUPS job {record['job_id']} on {record['queue']}: {e.message}") from None
        log.info("job {uuid} (CUPS {queue}-{job_id}) released{where}", uuid=record["uuid"],
                 queue=record["queue"], job_id=record["job_id"],
                 where=f" to print on {target_queue}" if device_uri else "")

    async def _cancel(self, record: dict, reason: str) -> None:
        self.held.update(record["uuid"], state="cancelled", reason=reason)
        try:
            await self.cups.cancel(record["job_id"])
        except NotFound:
            pass  # CUPS has forgotten it already
        self.held.delete(record["uuid"])
        log.info("job {uuid} (CUPS {queue}-{job_id}) cancelled: {reason}", uuid=record["uuid"],
                 queue=record["queue"], job_id=record["job_id"], reason=reason)

    # --- jobs from the CUPS backend --------------------------------------------------------------

    def handle_job(self, msg: dict) -> Deferred:
        """The backend's request -> a Deferred firing with the reply dict. Never fails."""
        d = Deferred.fromCoroutine(self._handle_job(msg))

        def failed(f):
            if f.check(PcnetError):
                log.warn("job from CUPS refused: {error}", error=f.value.message)
                return {"action": "hold", "reason": f.value.message}
            log.failure("job from CUPS could not be handled", f)
            return dict(_INTERNAL_HOLD)

        return d.addErrback(failed)

    async def _handle_job(self, msg: dict) -> dict:
        if msg.get("op") != "job":
            raise InvalidInput(f"unknown op {msg.get('op')!r}")
        queue = _text(msg, "queue")
        job_id = msg.get("job_id")
        if type(job_id) is not int:
            raise InvalidInput("job_id must be an integer")
        record = self.held.find(queue, job_id)
        if record is not None:
            return await self._held_job_runs(record, msg)
        spool = self._spool_path(msg)
        analysis = await self.analyse(spool)
        job = self._job_fields(msg, analysis)
        now = self.clock.seconds()
        recent = self._recent.pop((queue, job_id), None)
        if recent is not None and now - recent[1] < RETRY_WINDOW:
            job["uuid"] = recent[0]  # CUPS retried it: the same job, not a new one
        self._recent[(queue, job_id)] = (job["uuid"], recent[1] if recent and job["uuid"] == recent[0] else now)
        if len(self._recent) > _RECENT_MAX:
            del self._recent[next(iter(self._recent))]
        printer = self.printers.get(queue)
        if printer is None and self.link.up:
            # A queue wrapped since the last registration: tell the server about it now.
            try:
                await self.register_printers()
            except Exception:
                log.failure("registering printers failed")
            printer = self.printers.get(queue)
        if printer is not None:
            job["printer_id"] = printer["id"]
        try:
            reply = await self.link.request(M.JobSubmit.OP, timeout=self.decision_timeout, **job)
        except _NO_ANSWER as e:
            return self._no_answer(job, printer, f"{type(e).__name__}: {e}")
        except RemoteError as e:
            if e.code in ("invalid", "not_found", "forbidden"):
                log.warn("server refused job {uuid} on {queue}: {error}", uuid=job["uuid"],
                         queue=queue, error=e.message)
                return {"action": "deny", "reason": e.message}
            return self._no_answer(job, printer, f"server error {e.code}: {e.message}")
        return self._decided(job, reply)

    def _decided(self, job: dict, reply: dict) -> dict:
        decision = M.JobDecision.from_wire(reply)
        if decision.printer is not None and decision.printer.queue == job["queue"]:
            self.printers.update(job["queue"], _cache_entry(decision.printer, self.default_failure_mode))
        action = decision.action
        reason = decision.reason
        if action == "print":
            log.info("job {uuid} on {queue}: print ({cost})", uuid=job["uuid"], queue=job["queue"],
                     cost=reply.get("cost"))
            return {"action": "print", "reason": reason}
        if action == "hold":
            self.held.put({"uuid": job["uuid"], "queue": job["queue"], "job_id": job["cups_job_id"],
                           "state": "held", "report": True, "job": job})
            log.info("job {uuid} on {queue}: held", uuid=job["uuid"], queue=job["queue"])
            return {"action": "hold", "reason": reason or "held for release"}
        log.info("job {uuid} on {queue}: denied: {reason}", uuid=job["uuid"], queue=job["queue"],
                 reason=reason)
        return {"action": "deny", "reason": reason}

    def _no_answer(self, job: dict, printer: dict | None, why: str) -> dict:
        mode = FailureMode(printer["failure_mode"]) if printer else self.default_failure_mode
        log.warn("no decision from the server for job {uuid} on {queue} ({why}); failure mode "
                 "{mode}", uuid=job["uuid"], queue=job["queue"], why=why, mode=mode.value)
        over = check_limits(job["pages"], job["copies"], _limits_of(printer))
        if over and mode is not FailureMode.HOLD:
            # Printed, it could only be charged at the limits or flagged: it does not print.
            # (Held, it waits for the server, which denies and logs it.)
            log.warn("job {uuid} on {queue} is {over}: denied while no server answers",
                     uuid=job["uuid"], queue=job["queue"], over=over)
            return {"action": "deny", "reason": f"{over} (server unavailable)"}
        if mode is FailureMode.PRINT_NO_LOG:
            return {"action": "print", "reason": "server unavailable: printed without logging"}
        if mode is FailureMode.HOLD:
            self.held.put({"uuid": job["uuid"], "queue": job["queue"], "job_id": job["cups_job_id"],
                           "state": "offline", "report": False, "job": job})
            return {"action": "hold", "reason": "server unavailable: held until it answers"}
        # print-log-later: on disk first, then paper.
        self.journal.append("job.offline", dict(job, printed_at=self.clock.seconds()))
        return {"action": "print", "reason": "server unavailable: printed, logged later"}

    async def _held_job_runs(self, record: dict, msg: dict) -> dict:
        """CUPS runs the backend again for a job this provider holds or held."""
        state = record["state"]
        if state == "released":
            if record.get("report", True):
                report = M.JobPrinted(record["uuid"], record.get("target_printer_id"))
                # Journaled before the answer: a printed job is always reported, exactly once.
                self.journal.append(report.OP, report.to_wire())
            self.held.delete(record["uuid"])
            self._kick()
            reply = {"action": "print", "reason": "released"}
            if record.get("device_uri"):
                reply["device_uri"] = record["device_uri"]
            return reply
        if state == "cancelled":
            self.held.delete(record["uuid"])
            return {"action": "cancel", "reason": record.get("reason") or "cancelled"}
        if state == "offline" and self.link.up:
            await self._resolve_offline(record)
            record = self.held.get(record["uuid"])
            if record is None:
                return {"action": "cancel", "reason": "denied by the server"}
            if record["state"] == "released":
                return await self._held_job_runs(record, msg)
        # Released in CUPS by hand, not through pcnet: it stays held.
        return {"action": "hold", "reason": "held: release it through pcnet"}

    def _spool_path(self, msg: dict) -> str:
        spool = _text(msg, "spool")
        real = os.path.realpath(spool)
        if self.spool_dir is not None and os.path.dirname(real) != self.spool_dir:
            raise InvalidInput(f"spool file {spool} is not in the spool directory {self.spool_dir}")
        try:
            if not stat.S_ISREG(os.stat(real).st_mode):
                raise InvalidInput(f"spool file {spool} is not a regular file")
        except OSError as e:
            raise InvalidInput(f"spool file {spool}: {e.strerror}") from None
        return real

    def _job_fields(self, msg: dict, analysis: dict) -> dict:
        filtered = bool(msg.get("stdin", msg.get("filtered")))
        copies = msg.get("copies")
        copies = copies if type(copies) is int and copies > 0 else 1
        # On a queue with filters the data already holds every copy (the filters made them).
        copies = (1 if filtered else copies) * max(1, analysis.get("copies") or 1)
        duplex = duplex_from_options(msg.get("options") or "")
        pages = max(0, int(analysis["pages"]))
        return M.JobSubmit(
            uuid=str(uuidlib.uuid4()),
            queue=msg["queue"],
            cups_job_id=msg["job_id"],
            user=str(msg.get("user") or ""),
            document_name=str(msg.get("title") or "")[:255],
            pages=pages,
            colour_pages=min(pages, max(0, int(analysis.get("colour_pages") or 0))),
            duplex=analysis.get("duplex", False) if duplex is None else duplex,
            copies=copies,
            paper_size=analysis.get("paper_size") or self.paper_size,
            analysis_fallback=bool(analysis.get("fallback") or analysis.get("error")),
        ).to_wire()

    # --- when the link comes up --------------------------------------------------------------------

    def link_up(self) -> None:
        log.info("connected to the server; registering printers and catching up")
        self._kick(register=True)

    def _kick(self, register: bool = False) -> Deferred:
        """Run the catch-up (register, replay, settle) unless it is running; then once more."""
        if self._sync is not None:
            self._sync_again = True
            self._sync_register = self._sync_register or register
            return self._sync
        self._sync_register = register
        d = self._sync = Deferred.fromCoroutine(self._catch_up())

        def done(result):
            self._sync = None
            if self._sync_again and self.link.up:
                self._sync_again = False
                self._kick(self._sync_register)
            return None

        d.addErrback(lambda f: log.failure("catching up with the server failed", f))
        d.addBoth(done)
        return d

    def catch_up(self) -> Deferred:
        """For the retry timer and tests: the same catch-up, without registering printers."""
        return self._kick()

    async def _catch_up(self) -> None:
        if not self.link.up:
            return
        await self.settle_cups()
        if self._sync_register:
            self._sync_register = False
            await self.register_printers()
        await self.flush_journal()
        for record in self.held.all("offline"):
            if not self.link.up:
                return
            await self._resolve_offline(record)
        for record in self.held.all("held"):
            if not self.link.up:
                return
            await self._check_held(record)

    async def settle_cups(self) -> None:
        """Finish CUPS work a crash may have cut short: a job marked released is released in
        CUPS (again: idempotent), a job marked cancelled is cancelled. Needs no server."""
        for record in self.held.all("released"):
            try:
                await self.cups.release(record["job_id"])
            except (Conflict, NotFound):
                # Finished in CUPS without running the backend again (cancelled by hand).
                self.held.delete(record["uuid"])
            except PcnetError as e:
                log.warn("could not release CUPS job {job_id}: {error}", job_id=record["job_id"],
                         error=e.message)
        for record in self.held.all("cancelled"):
            try:
                await self._cancel(record, record.get("reason") or "cancelled")
            except PcnetError as e:
                log.warn("could not cancel CUPS job {job_id}: {error}", job_id=record["job_id"],
                         error=e.message)

    async def register_printers(self) -> None:
        queues = await self.cups.managed_queues()
        request = M.PrintersRegister(tuple(
            M.QueueInfo(q.name, location=q.location, info=q.info, make_and_model=q.make_and_model)
            for q in queues))
        reply = await self.link.request(request.OP, timeout=max(30.0, self.decision_timeout),
                                        **request.to_wire())
        cache = {p.queue: _cache_entry(p, self.default_failure_mode)
                 for p in M.PrintersRegistered.from_wire(reply).printers}
        self.printers.replace(cache)
        log.info("registered {n} printers with the server: {names}", n=len(cache),
                 names=", ".join(sorted(cache)) or "none")

    async def flush_journal(self) -> int:
        """Send the journal in order; returns how many entries the server acknowledged.

        An acknowledged entry is removed. When no server answers, or it says it cannot take
        the entry now (`SERVER_UNAVAILABLE`), the flush stops, to be repeated later. An entry it
        refuses or fails on for any other reason (`invalid`, `not_found`, `forbidden`,
        `internal`, ...) is quarantined with its error and the entries behind it go on; the
        quarantined ones are then reported to the server."""
        sent = 0
        timeout = max(30.0, self.decision_timeout)
        for key, kind, record, retried in self.journal.pending():
            problem = _unsendable(kind, record)
            if problem:
                self._quarantine(key, kind, record, "malformed", problem)
                continue
            try:
                await self.link.request(kind, timeout=timeout, **record)
            except _NO_ANSWER:
                return sent
            except RemoteError as e:
                if e.code in SERVER_UNAVAILABLE:
                    log.warn("server could not take journal entry {key} yet: {code}: {error}",
                             key=key, code=e.code, error=e.message)
                    return sent
                self._quarantine(key, kind, record, e.code, e.message)
                continue
            except Exception as e:  # the link could not even send it (not JSON, a bad field)
                self._quarantine(key, kind, record, "unsendable", f"{type(e).__name__}: {e}")
                continue
            if retried:
                self.journal.resolved(key, now=self.clock.seconds())
                log.info("quarantined journal entry {key} was replayed at last", key=key)
            else:
                self.journal.acknowledged(key)
            sent += 1
        if sent:
            log.info("replayed {n} journal entries to the server", n=sent)
        await self.report_quarantine()
        return sent

    def _quarantine(self, key: str, kind, record, code: str, message: str) -> None:
        uuid = record.get("uuid") if isinstance(record, dict) else None
        log.error("journal entry {key} ({kind}, job {uuid}) quarantined: {code}: {error}; kept in "
                  "{dir}, the entries behind it go on", key=key, kind=kind, uuid=uuid, code=code,
                  error=message, dir=str(self.journal.quarantine_dir))
        self.journal.quarantine(key, code, message, now=self.clock.seconds())

    async def report_quarantine(self) -> None:
        """Tell the server about quarantined (and newly resolved) entries it has not heard of,
        so that administrators see them there (`journal.quarantined`)."""
        for key, entry in self.journal.unreported():
            if not self.link.up:
                return
            try:
                await self.link.request(M.JournalQuarantined.OP,
                                        timeout=max(30.0, self.decision_timeout),
                                        **_quarantine_report(key, entry).to_wire())
            except _NO_ANSWER:
                return
            except RemoteError as e:
                if e.code in SERVER_UNAVAILABLE or e.code == "unknown_op":
                    log.warn("could not report quarantined journal entry {key} yet: {code}: "
                             "{error}", key=key, code=e.code, error=e.message)
                    return
                # Refused for good: not asked again (it stays quarantined here, and logged).
                log.error("the server refused the report of quarantined journal entry {key}: "
                          "{code}: {error}", key=key, code=e.code, error=e.message)
                self.journal.reported(key, note=f"{e.code}: {e.message}")
                continue
            self.journal.reported(key)

    async def _resolve_offline(self, record: dict) -> None:
        """A job held by the `hold` failure mode: ask for the decision now (same uuid: the
        server's answer is idempotent), then release, keep or cancel the CUPS job."""
        try:
            reply = await self.link.request(M.JobSubmit.OP, timeout=self.decision_timeout,
                                            **record["job"])
        except _NO_ANSWER:
            return
        except RemoteError as e:
            if e.code not in ("invalid", "not_found", "forbidden"):
                return
            reply = {"action": "deny", "reason": e.message}
        decision = M.JobDecision.from_wire(reply)
        action = decision.action
        if action == "print":
            # Charged by job.submit: the rerun must not report it again.
            self.held.update(record["uuid"], report=False)
            try:
                await self._release(self.held.get(record["uuid"]), None, None)
            except NotFound as e:
                log.warn("could not release {uuid}: {error}", uuid=record["uuid"], error=e.message)
        elif action == "hold":
            self.held.update(record["uuid"], state="held", report=True)
        else:
            await self._cancel(record, f"denied: {decision.reason}".rstrip(": "))

    async def _check_held(self, record: dict) -> None:
        """Catch up on a release or cancellation pushed while the link was down."""
        query = M.JobStatusQuery(record["uuid"])
        try:
            reply = await self.link.request(query.OP, timeout=self.decision_timeout,
                                            **query.to_wire())
        except _NO_ANSWER:
            return
        except RemoteError as e:
            if e.code == "not_found":
                await self._cancel(record, "unknown to the server")
            return
        answer = M.JobStatusReply.from_wire(reply)
        status = answer.status
        if status == "released":
            try:
                await self._release(record, answer.target_queue, answer.target_printer_id)
            except NotFound as e:
                log.warn("could not release {uuid}: {error}", uuid=record["uuid"], error=e.message)
        elif status in ("cancelled", "expired", "denied"):
            await self._cancel(record, status)


def _cache_entry(p: M.PrinterInfo, default_failure_mode: FailureMode) -> dict:
    """What the provider keeps about a printer (from printers.register or job.submit), as the
    JSON of its printer cache."""
    entry = {"id": p.id, "name": p.name, "hold_mode": HoldMode(p.hold_mode).value,
             "failure_mode": FailureMode(p.failure_mode or default_failure_mode).value,
             "pdl": p.pdl}
    if p.limits is not None:
        entry["limits"] = p.limits.to_json()
    return entry


def _limits_of(printer: dict | None) -> JobLimits:
    """The job limits the server gave with this printer; the defaults for a queue it never
    described (or an older server that sends none)."""
    limits = printer.get("limits") if printer else None
    if not isinstance(limits, dict):
        return DEFAULT_LIMITS
    try:
        return JobLimits(**{k: limits[k] for k in ("max_copies", "max_pages", "max_total_pages")
                            if k in limits})
    except (TypeError, ValueError):
        return DEFAULT_LIMITS


def _unsendable(kind, record) -> str | None:
    """Why a journal entry cannot be sent at all, or None."""
    if kind not in JOURNAL_OPS:
        return f"not a journal entry kind: {str(kind)[:64]!r}"
    if not isinstance(record, dict) or not all(isinstance(k, str) for k in record):
        return "the record is not a JSON object"
    reserved = _RESERVED_FIELDS.intersection(record)
    if reserved:
        return f"the record has fields of the protocol's own: {', '.join(sorted(reserved))}"
    return None


def _quarantine_report(key: str, entry: dict) -> M.JournalQuarantined:
    """The journal.quarantined report of a quarantined entry, within the server's bounds."""
    record = entry.get("record")
    if not isinstance(record, dict):
        record = {"value": record}
    if len(json.dumps(record)) > _REPORT_RECORD:
        record = {"uuid": record.get("uuid"), "truncated": True}
    error = entry.get("error") if isinstance(entry.get("error"), dict) else {}
    job_uuid = ""
    if isinstance(record.get("uuid"), str):
        try:
            job_uuid = str(uuidlib.UUID(record["uuid"]))
        except ValueError:
            pass
    quarantined_at = entry.get("quarantined_at")
    return M.JournalQuarantined(
        key=key, kind=str(entry.get("kind") or "unknown")[:64],
        error_code=str(error.get("code") or "unknown")[:64],
        error_message=str(error.get("message") or "")[:_REPORT_MESSAGE], record=record,
        state=entry.get("state", "quarantined"), uuid=job_uuid,
        quarantined_at=quarantined_at if isinstance(quarantined_at, (int, float)) else None)


def _text(msg: dict, key: str) -> str:
    value = msg.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{key}: required")
    return value


# --- the backend's Unix socket ---------------------------------------------------------------------


class BackendProtocol(LineOnlyReceiver):
    """One backend connection: one JSON line in, one JSON line out (docs/cups.md)."""

    delimiter = b"\n"
    MAX_LENGTH = 64 * 1024

    def __init__(self, provider: PrintProvider):
        self.provider = provider
        self._busy = False

    def lineReceived(self, line: bytes) -> None:
        if self._busy:
            return
        self._busy = True
        try:
            msg = json.loads(line)
            if not isinstance(msg, dict):
                raise ValueError("not an object")
        except ValueError:
            self._answer({"action": "hold", "reason": "pcnet provider: malformed request"})
            return
        self.provider.handle_job(msg).addCallback(self._answer)

    def _answer(self, reply: dict) -> None:
        if self.transport is None or not self.connected:
            return
        self.sendLine(json.dumps(reply, separators=(",", ":")).encode())
        self.transport.loseConnection()

    def lineLengthExceeded(self, line):
        self.transport.loseConnection()


class BackendFactory(Factory):
    noisy = False

    def __init__(self, provider: PrintProvider):
        self.provider = provider

    def buildProtocol(self, addr):
        return BackendProtocol(self.provider)


# --- the service ---------------------------------------------------------------------------------------


class _ThreadPoolService(Service):
    def __init__(self, pool: ThreadPool):
        self.pool = pool

    def startService(self):
        super().startService()
        self.pool.start()

    def stopService(self):
        super().stopService()
        self.pool.stop()


class _SocketCleanup(Service):
    """Remove a stale socket file (a previous run that crashed) before listening."""

    def __init__(self, path: Path):
        self.path = path
        self._done = False

    def _cleanup(self):
        if self._done:
            return
        self._done = True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                self.path.unlink()
        except FileNotFoundError:
            pass

    # twistd starts listeners in privilegedStartService: clean up before that.
    def privilegedStartService(self):
        super().privilegedStartService()
        self._cleanup()

    def startService(self):
        super().startService()
        self._cleanup()

    def stopService(self):
        self._done = False
        return super().stopService()


def load_credential(path: Path) -> str:
    """The node's credential; created (256 random bits, mode 0600) on first start."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        private_directory(path.parent)
        credential = new_credential()
        write_durably(path, (credential + "\n").encode(), 0o600)
        log.info("created a new node credential in {path}", path=str(path))
        return credential
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the node credential: {e.strerror}") from None
    if not text:
        raise ConfigError(f"{path}: the node credential file is empty")
    return text


class ProviderService(MultiService):
    """The provider role's services; `provider` is the `PrintProvider`, `link` its `ServerLink`,
    `client` the `ServerList` that keeps one pcnet/1 session with the first of `[server]
    servers` that answers."""

    def __init__(self, settings, reactor, *, tls_options=None, cups=None, analyse=None):
        super().__init__()
        from pcnet.net.tls import client_tls_options

        self.settings = s = settings
        self.reactor = reactor
        try:
            ca_pem = s.ca_cert.read_bytes()
        except OSError as e:
            raise ConfigError(f"{s.path}: [server] ca_cert: cannot read {s.ca_cert}: "
                              f"{e.strerror}") from None
        credential = load_credential(s.credential_file)
        tls_for = {}
        for server in s.servers:
            if tls_options is not None:
                tls_for[server.host] = tls_options
            elif server.host not in tls_for:
                try:
                    tls_for[server.host] = client_tls_options(server.host, ca_pem)
                except Exception as e:
                    raise ConfigError(f"{s.path}: [server] ca_cert: {s.ca_cert}: {e}") from None

        limits = s.analysis
        try:
            from pcnet.spool import SandboxUnavailable, sandbox_mode

            if limits.work_dir:
                os.makedirs(limits.work_dir, mode=0o700, exist_ok=True)
            log.info("spool analysis runs Ghostscript in the {mode} sandbox",
                     mode=sandbox_mode(limits))
        except SandboxUnavailable as e:
            raise ConfigError(f"{s.path}: [analysis] sandbox: {e}") from None
        except OSError as e:
            raise ConfigError(f"{s.path}: [analysis] work_dir: {e.strerror}") from None
        analysis_pool = ThreadPool(minthreads=0, maxthreads=s.analysis_threads, name="pcnet-analysis")
        cups_pool = ThreadPool(minthreads=0, maxthreads=1, name="pcnet-cups")
        _ThreadPoolService(analysis_pool).setServiceParent(self)
        _ThreadPoolService(cups_pool).setServiceParent(self)

        if analyse is None:
            def analyse(path):
                return deferToThreadPool(reactor, analysis_pool, analyse_spool, path, limits,
                                         s.paper_size)
        if cups is None:
            cups = CupsControl(reactor, cups_pool, s.cups_server)

        self.link = ServerLink(reactor)
        journal_dir = s.journal_dir
        self.provider = PrintProvider(
            node=s.node, clock=reactor, link=self.link, cups=cups, analyse=analyse,
            journal=OfflineJournal(journal_dir / "offline"), held=HeldJobs(journal_dir / "held"),
            printers=PrinterCache(journal_dir / "printers.json"),
            decision_timeout=s.decision_timeout, default_failure_mode=s.default_failure_mode,
            spool_dir=s.spool_dir, paper_size=s.paper_size)

        line_config = LineConfig(max_line_length=s.max_line_length,
                                 heartbeat_interval=s.heartbeat_interval,
                                 missed_beats=s.missed_beats, pending_retry=s.pending_retry)
        self.factory = LineClientFactory(role="provider", node=s.node, credential=credential,
                                         clock=reactor, ops=self.provider.operations(),
                                         config=line_config, enrolment_code=s.enrolment_code)
        # One session with the first server of the list that answers (pcnet.net.failover).
        self.factory.hello_timeout = max(30.0, s.decision_timeout)
        servers = []
        for server in s.servers:
            try:
                tcp = endpoints.clientFromString(reactor, server.endpoint)
            except (ValueError, TypeError) as e:
                key = "servers" if len(s.servers) > 1 or server.endpoint != s.server_endpoint else "endpoint"
                raise ConfigError(f"{s.path}: [server] {key}: {server.endpoint!r}: {e}") from None
            servers.append(Server(f"{server.host} ({server.endpoint})",
                                  endpoints.wrapClientTLS(tls_for[server.host], tcp)))
        self.client = ServerList(
            servers, self.factory, clock=reactor, on_session=self._session_up,
            max_delay=s.reconnect_max_delay, rejected_delay=s.rejected_retry,
            failback_interval=s.failback_interval)
        self.client.setServiceParent(self)

        _SocketCleanup(s.socket).setServiceParent(self)
        listener = StreamServerEndpointService(
            endpoints.UNIXServerEndpoint(reactor, str(s.socket), mode=0o660, wantPID=False),
            BackendFactory(self.provider))
        listener.setName("backend-socket")
        listener.setServiceParent(self)

        retry = TimerService(s.retry_interval, self._retry)
        retry.clock = reactor
        retry.setServiceParent(self)

    def _session_up(self, session, server) -> None:
        log.info("provider {node!r} has a session with the server {server}",
                 node=self.settings.node, server=server.name)
        self.link.attach(session)

    def _retry(self):
        p = self.provider
        if self.link.up and (len(p.journal) or p.held.all("offline") or p.journal.unreported()):
            return p.catch_up()
        return None

    def stopService(self):
        self.link.detach()
        return super().stopService()


def make_provider_service(config_path, reactor) -> ProviderService:
    """`twistd pcnet provider --config PATH`."""
    from pcnet.provider.config import load_settings

    settings = load_settings(config_path)
    return ProviderService(settings, reactor)
