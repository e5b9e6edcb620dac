"""Printers: their cost models, filters, hold and failure modes, and the queues Print Providers
register.

A printer keeps its id when renamed (its names are kept with the times they were used). Cost
models and filters change by parts: `update(cost_model={"colour": ...})` changes only the
colour price; `sizes` is replaced as a whole.
"""

from __future__ import annotations

from dataclasses import replace

from twisted.logger import Logger

from pcnet.app.services._base import Service
from pcnet.app.services.actor import Actor, require_admin
from pcnet.domain import rules as R
from pcnet.domain.model import CostModel, FailureMode, Filters, HoldMode, Printer
from pcnet.errors import Conflict, Forbidden, NotFound

log = Logger(namespace="pcnet.app.services.printers")

#: What `create` and `update` take besides the name.
PRINTER_FIELDS = ("server", "queue", "location", "cost_model", "filters", "hold_mode",
                  "failure_mode", "pdl", "disabled")
COST_MODEL_KEYS = ("grey", "colour", "duplex_discount", "sizes")
FILTER_KEYS = ("max_pages", "max_copies", "max_cost", "grey_only", "duplex_only",
               "deny_document_patterns", "duplicate_window_seconds")
#: How many queues one registration may name.
MAX_REGISTERED_QUEUES = 10_000


def merge_cost_model(base: CostModel, changes) -> CostModel:
    """`base` with `changes` (a CostModel, or a dict of some of `COST_MODEL_KEYS`) applied,
    every price checked; `sizes` maps a size name to (grey, colour) or {"grey", "colour"}."""
    if isinstance(changes, CostModel):
        changes = {"grey": changes.grey, "colour": changes.colour,
                   "duplex_discount": changes.duplex_discount, "sizes": changes.sizes}
    unknown = set(changes) - set(COST_MODEL_KEYS)
    if unknown:
        raise R.invalid(f"cost_model.{sorted(unknown)[0]}", "unknown field")
    out = {}
    for key in ("grey", "colour", "duplex_discount"):
        if key in changes:
            out[key] = R.PRICE.check(changes[key], f"cost_model.{key}")
    if "sizes" in changes:
        sizes, seen = {}, {}
        given = changes["sizes"]
        if len(given) > R.MAX_SIZES:
            raise R.invalid("cost_model.sizes", f"has {len(given)} entries; at most {R.MAX_SIZES} are allowed")
        for name, prices in given.items():
            field = f"cost_model.sizes.{name}"
            R.SIZE_NAME.check(name, field)
            if name.lower() in seen:
                raise R.invalid(field, f"the same size as {seen[name.lower()]!r}")
            seen[name.lower()] = name
            grey, colour = (prices["grey"], prices["colour"]) if isinstance(prices, dict) else prices
            sizes[name] = (R.PRICE.check(grey, f"{field}.grey"), R.PRICE.check(colour, f"{field}.colour"))
        out["sizes"] = sizes
    return replace(base, **out)


def merge_filters(base: Filters, changes) -> Filters:
    """`base` with `changes` (a Filters, or a dict of some of `FILTER_KEYS`; None turns a
    limit off) applied, every value checked."""
    if isinstance(changes, Filters):
        changes = {key: getattr(changes, key) for key in FILTER_KEYS}
    unknown = set(changes) - set(FILTER_KEYS)
    if unknown:
        raise R.invalid(f"filters.{sorted(unknown)[0]}", "unknown field")
    out = {}
    for key, rule in (("max_pages", R.FILTER_MAX_PAGES), ("max_copies", R.FILTER_MAX_COPIES),
                      ("max_cost", R.NON_NEGATIVE),
                      ("duplicate_window_seconds", R.DUPLICATE_WINDOW)):
        if key in changes:
            out[key] = None if changes[key] is None else rule.check(changes[key], f"filters.{key}")
    for key in ("grey_only", "duplex_only"):
        if key in changes:
            out[key] = R.boolean(changes[key], f"filters.{key}")
    if "deny_document_patterns" in changes:
        out["deny_document_patterns"] = R.items(
            R.DOCUMENT_PATTERN, changes["deny_document_patterns"], "filters.deny_document_patterns",
            max_items=R.MAX_DOCUMENT_PATTERNS)
    return replace(base, **out)


def check_printer_fields(fields: dict, current: Printer | None) -> dict:
    """The columns of a printer from `fields` (some of `PRINTER_FIELDS`), checked, with the
    cost model and filters merged into `current`'s (or the defaults)."""
    unknown = set(fields) - set(PRINTER_FIELDS) - {"name"}
    if unknown:
        raise TypeError(f"unknown printer fields: {', '.join(sorted(unknown))}")
    out = {}
    if "name" in fields:
        out["name"] = R.NAME.check(fields["name"], "name")
    for key in ("server", "queue", "location"):
        if key in fields:
            out[key] = R.LINE.check(fields[key], key)
    if "pdl" in fields:
        out["pdl"] = R.PDL.check(fields["pdl"], "pdl")
    if "hold_mode" in fields:
        out["hold_mode"] = R.choice(HoldMode, fields["hold_mode"], "hold_mode")
    if "failure_mode" in fields:
        out["failure_mode"] = R.choice(FailureMode, fields["failure_mode"], "failure_mode")
    if "disabled" in fields:
        out["disabled"] = R.boolean(fields["disabled"], "disabled")
    if "cost_model" in fields:
        out["cost_model"] = merge_cost_model(current.cost_model if current else CostModel(),
                                             fields["cost_model"])
    if "filters" in fields:
        out["filters"] = merge_filters(current.filters if current else Filters(), fields["filters"])
    return out


class PrinterService(Service):
    async def get(self, ref: int | str) -> Printer:
        """A printer by id (an int) or name (a str); NotFound."""
        if isinstance(ref, int) and not isinstance(ref, bool):
            return await self.store.get_printer(ref)
        return await self.store.get_printer_by_name(ref)

    async def list(self) -> list[Printer]:
        return await self.store.list_printers()

    async def names(self, ref):
        printer = await self.get(ref)
        return await self.store.printer_names(printer.id)

    async def find_queue(self, server: str, queue: str) -> Printer | None:
        return await self.store.find_printer(server, queue)

    async def create(self, actor: Actor, name: str, **fields) -> Printer:
        require_admin(actor, "create printers")
        columns = check_printer_fields({"name": name, **fields}, None)
        columns.pop("name")
        columns.setdefault("cost_model", CostModel())
        columns.setdefault("filters", Filters())
        printer = await self.store.create_printer(
            name, **columns, audit=self.audit(actor, "printer.create", "printer"))
        self.ctx.publish("printer", printer.id, "create", printer.name)
        return printer

    async def update(self, actor: Actor, ref, **changes) -> Printer:
        """Change what `changes` names (`name` and `PRINTER_FIELDS`); a rename keeps the id."""
        require_admin(actor, "change printers")
        printer = await self.get(ref)
        columns = check_printer_fields(changes, printer)
        if not columns:
            return printer
        updated = await self.store.update_printer(
            printer.id, **columns, audit=self.audit(actor, "printer.update", "printer",
                                                    before=printer))
        self.ctx.publish("printer", printer.id, "update", printer.name)
        if updated.name != printer.name:
            self.ctx.publish("printer", printer.id, "update", updated.name)
        return updated

    async def upsert(self, actor: Actor, name: str, **fields) -> tuple[Printer, bool]:
        """Create the printer, or update the one of that name (an import row); fires with
        (Printer, created)."""
        try:
            printer = await self.store.get_printer_by_name(R.NAME.check(name, "name"))
        except NotFound:
            return await self.create(actor, name, **fields), True
        return await self.update(actor, printer.id, **fields), False

    async def register_queues(self, actor: Actor, queues) -> list[Printer]:
        """A Print Provider's CUPS queues (`queues`: (queue, location) pairs) as printers,
        found by (provider, queue) and created on first sight (named after the queue, or
        `node/queue` when that name is taken), as they are now. Every queue is checked before
        any is registered: a bad one changes nothing."""
        if actor.kind != "provider" or not actor.name:
            raise Forbidden("only an approved Print Provider may register its queues")
        node = actor.name
        queues = list(queues)
        if len(queues) > MAX_REGISTERED_QUEUES:
            raise R.invalid("printers", f"expected a list of at most {MAX_REGISTERED_QUEUES}")
        for i, (queue, location) in enumerate(queues):
            R.QUEUE.check(queue, f"printers[{i}].queue")
            R.QUEUE_LOCATION.check(location, f"printers[{i}].location")
        out = []
        for queue, location in queues:
            printer = await self.store.find_printer(node, queue)
            if printer is None:
                printer = await self._create_for_queue(actor, queue, location)
                log.info("provider {node!r}: new printer {name!r} (id {id}) for queue {queue!r}",
                         node=node, name=printer.name, id=printer.id, queue=queue)
            out.append(printer)
        return out

    async def _create_for_queue(self, actor: Actor, queue: str, location: str) -> Printer:
        node = actor.name
        for name in (queue, f"{node}/{queue}"):
            try:
                printer = await self.store.create_printer(
                    name, server=node, queue=queue, location=location, hold_mode=HoldMode.NONE,
                    failure_mode=FailureMode.PRINT_LOG_LATER,
                    audit=self.audit(actor, "printer.register", "printer"))
            except Conflict:
                continue
            self.ctx.publish("printer", printer.id, "create", printer.name)
            return printer
        raise Conflict(f"cannot name a printer for queue {queue!r} on {node!r}")
