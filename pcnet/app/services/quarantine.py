"""Journal entries Print Providers quarantined: what a provider reports (pcnet/1
`journal.quarantined`), and an administrator's request to send one again (`journal.retry`
pushed to the provider), so administrators see and fix them without logging onto the print
server."""

from __future__ import annotations

from datetime import datetime

from twisted.internet import defer
from twisted.logger import Logger

from pcnet.app.services._base import Service
from pcnet.app.services.actor import Actor, require_admin
from pcnet.app.services.held_jobs import PUSH_TIMEOUT, ProviderOffline
from pcnet.errors import Conflict, Forbidden
from pcnet.net.line import LinkDown
from pcnet.net.messages import JournalRetry
from pcnet.store import QuarantinedEntry

log = Logger(namespace="pcnet.app.services.quarantine")


class QuarantineService(Service):
    def __init__(self, ctx, services, sessions):
        super().__init__(ctx, services)
        self.sessions = sessions

    async def list(self, *, node: str | None = None, state: str | None = None, offset: int = 0,
                   limit: int = 100):
        return await self.store.list_quarantined(offset, limit, node=node, state=state)

    async def get(self, entry_id: int) -> QuarantinedEntry:
        return await self.store.get_quarantined(entry_id)

    async def report(self, actor: Actor, *, key: str, kind: str, job_uuid: str, error_code: str,
                     error_message: str, record: dict, state: str,
                     quarantined_at: datetime | None) -> QuarantinedEntry:
        """A provider's report of an entry it set aside (`quarantined`, with the error it got)
        or replayed at last after a retry (`resolved`); fields checked by the message schema
        (`pcnet.net.messages.JournalQuarantined`)."""
        if actor.kind != "provider":
            raise Forbidden("only an approved Print Provider may do this")
        entry = await self.store.report_quarantined(
            actor.name, key, kind=kind, job_uuid=job_uuid, error_code=error_code,
            error_message=error_message, record=record, state=state, quarantined_at=quarantined_at)
        self.ctx.publish("journal_entry", entry.id, "update", actor.name)
        if state == "quarantined":
            log.error("provider {node!r} quarantined journal entry {key} ({kind}, job {uuid}): "
                      "{code}: {message}", node=actor.name, key=key, kind=kind,
                      uuid=job_uuid or "?", code=error_code, message=error_message)
        else:
            log.info("provider {node!r} replayed quarantined journal entry {key}", node=actor.name,
                     key=key)
        return entry

    async def retry(self, actor: Actor, entry_id: int) -> QuarantinedEntry:
        """Ask the provider holding a quarantined entry to put it back in its journal and replay
        it at once; it then reports the outcome (resolved, or quarantined again with the new
        error). Needs the provider connected (ProviderOffline); Conflict when it was replayed
        already or the provider no longer holds it."""
        require_admin(actor, "retry quarantined journal entries")
        entry = await self.store.get_quarantined(entry_id)
        if entry.state == "resolved":
            raise Conflict(f"journal entry {entry.key} of {entry.node!r} was replayed already")
        session = self.sessions.session("provider", entry.node)
        if session is None:
            raise ProviderOffline(f"print server {entry.node!r} is not connected; retry the entry "
                                  "when it is back")
        try:
            push = JournalRetry((entry.key,))
            reply = await session.request(push.OP, **push.to_wire()).addTimeout(
                PUSH_TIMEOUT, self.ctx.clock)
        except (LinkDown, defer.TimeoutError) as e:
            raise ProviderOffline(f"print server {entry.node!r} did not answer: {e}") from None
        restored = reply.get("restored") if isinstance(reply, dict) else None
        if not isinstance(restored, list) or entry.key not in restored:
            raise Conflict(f"print server {entry.node!r} no longer holds journal entry "
                           f"{entry.key} in quarantine")
        log.info("{actor} asked provider {node!r} to retry journal entry {key}", actor=actor.label,
                 node=entry.node, key=entry.key)
        retrying = await self.store.set_quarantined_state(entry.id, "retrying", audit=self.audit(
            actor, "journal.retry", "journal_entry", before=entry))
        self.ctx.publish("journal_entry", entry.id, "update", entry.node)
        return retrying
