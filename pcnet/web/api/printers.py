"""/printers: printers with their cost models, filters and modes (`pcnet.app.services.printers`)."""

from __future__ import annotations

from pcnet.domain import rules as R
from pcnet.domain.model import FailureMode, HoldMode
from pcnet.web import _schemas as S
from pcnet.web._fields import Boolean, Choice, Integer, ListOf, MapOf, Money, Object, Pattern, String
from pcnet.web.api._base import PAGING, PRINTER_REF, ApiBase, name_field, page, ref

route = ApiBase.route

COST_MODEL_FIELDS = {
    "grey": Money(rule=R.PRICE, description="price of a grey side"),
    "colour": Money(rule=R.PRICE, description="price of a colour side"),
    "duplex_discount": Money(rule=R.PRICE, description="taken off each side printed in duplex"),
    "sizes": MapOf(String(rule=R.SIZE_NAME), Object({"grey": Money(rule=R.PRICE, required=True),
                                                     "colour": Money(rule=R.PRICE, required=True)}),
                   max_items=R.MAX_SIZES, description="prices per paper size; replaced as a whole"),
}
FILTER_FIELDS = {
    "max_pages": Integer(rule=R.FILTER_MAX_PAGES, nullable=True, description="pages x copies; null: no limit"),
    "max_copies": Integer(rule=R.FILTER_MAX_COPIES, nullable=True),
    "max_cost": Money(rule=R.NON_NEGATIVE, nullable=True),
    "grey_only": Boolean(), "duplex_only": Boolean(),
    "deny_document_patterns": ListOf(Pattern(), max_items=R.MAX_DOCUMENT_PATTERNS,
                                     description="case-insensitive regular expressions"),
    "duplicate_window_seconds": Integer(rule=R.DUPLICATE_WINDOW, nullable=True),
}
COST_MODEL = Object(COST_MODEL_FIELDS, description="missing keys keep their current (or default) value")
FILTERS = Object(FILTER_FIELDS, description="missing keys keep their current (or default) value")
PRINTER_FIELDS = {
    "server": String(rule=R.LINE), "queue": String(rule=R.LINE), "location": String(rule=R.LINE),
    "cost_model": COST_MODEL, "filters": FILTERS,
    "hold_mode": Choice(HoldMode), "failure_mode": Choice(FailureMode),
    "pdl": String(rule=R.PDL), "disabled": Boolean(),
}
PRINTER_CREATE = Object({"name": name_field(required=True), **PRINTER_FIELDS})
PRINTER_UPDATE = Object({"name": name_field(description="renaming keeps the id and history"),
                         **PRINTER_FIELDS}, min_fields=1)


class PrinterRoutes(ApiBase):
    @route("GET", "/printers", summary="List printers", tag="printers", query=PAGING,
           response=S.PRINTER_PAGE)
    async def list_printers(self, call):
        printers = await self.services.printers.list()
        return page(printers, call.query["offset"], call.query["limit"], S.printer_json)

    @route("POST", "/printers", summary="Create a printer", tag="printers", body=PRINTER_CREATE,
           status=201, response=S.PRINTER, errors=(400, 409))
    async def create_printer(self, call):
        b = dict(call.body)
        return S.printer_json(await self.services.printers.create(call.actor, b.pop("name"), **b))

    @route("GET", "/printers/<printer>", summary="Get a printer by id or name", tag="printers",
           params={"printer": PRINTER_REF}, response=S.PRINTER, errors=(400, 404))
    async def get_printer(self, call):
        return S.printer_json(await self.services.printers.get(ref(call.params["printer"])))

    @route("PATCH", "/printers/<printer>", summary="Change a printer", tag="printers",
           params={"printer": PRINTER_REF}, body=PRINTER_UPDATE, response=S.PRINTER,
           errors=(400, 404, 409),
           description="Only the fields sent change; inside `cost_model` and `filters` only the keys "
                       "sent change (null turns a filter off); `sizes` is replaced as a whole. "
                       "A rename keeps the printer's id and history.")
    async def update_printer(self, call):
        return S.printer_json(await self.services.printers.update(
            call.actor, ref(call.params["printer"]), **call.body))

    @route("GET", "/printers/<printer>/names", summary="Every name a printer has had", tag="printers",
           params={"printer": PRINTER_REF}, response=S.PRINTER_NAMES, errors=(400, 404),
           description="Oldest first; `until` is null for the current name. Reports use it to "
                       "show jobs under the name the printer had at the time.")
    async def printer_names(self, call):
        names = await self.services.printers.names(ref(call.params["printer"]))
        return {"items": [S.printer_name_json(n) for n in names]}
