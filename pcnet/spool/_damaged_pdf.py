"""Damaged PDFs: count the pages qpdf cannot read, so that a broken file is not one page.

qpdf (pikepdf) refuses some files that printers and viewers print anyway, e.g. a page tree whose
root has no ``/Kids`` (py-pdf's sample ``unreadablemetadata.pdf``: 4 pages, charged as 1 before).
When it does, the pages are looked for more leniently, in this order:

1. pypdf's page tree (``strict=False``: it rebuilds a broken cross-reference table);
2. pypdf's objects: every object listed in the cross-reference table or an object stream that is
   a dictionary with ``/Type /Page``, in object-number order;
3. a byte scan of the file for ``/Type /Page`` (pages kept in compressed object streams are
   missed; used only when pypdf cannot read the file at all).

Colour: when the page objects were found (1 or 2), they are written to a repaired copy in the
job's private directory (inherited ``/MediaBox``, ``/CropBox``, ``/Resources`` and ``/Rotate``
copied onto each page), and Ghostscript renders that; otherwise Ghostscript renders the original
file as best it can. Pages it renders keep their verdict, the others count as colour, as in any
rendering that falls short (:func:`._ghostscript.merge_rendering`). The result is always a
fallback (``error`` says the file is damaged and how its pages were counted), so the provider
logs it and the server records it.
"""

from __future__ import annotations

import logging
import mmap
import re
from dataclasses import dataclass, field

from . import _ghostscript, _paper
from ._result import SpoolAnalysis, failed, from_page_colours, over_page_limit
from ._sandbox import Sandbox

_INHERITED = ("/MediaBox", "/CropBox", "/Resources", "/Rotate")
_PAGE_OBJECT = re.compile(rb"/Type\s*/Page(?![A-Za-z0-9#])")
_MAX_PARENTS = 32

# pypdf reports every oddity of a damaged file as a warning on its logger: one broken file
# could flood the provider's log. The analysis's own message says what matters.
logging.getLogger("pypdf").setLevel(logging.CRITICAL)


@dataclass
class FoundPages:
    count: int = 0
    method: str = ""
    paper: str = "unknown"
    objects: list = field(default_factory=list)  # pypdf page dictionaries, when found


def analyse_damaged_pdf(path: str, problem: str, *, sandbox: Sandbox) -> SpoolAnalysis:
    """Count and judge the pages of a PDF qpdf refused (*problem* says why)."""
    max_pages = sandbox.limits.max_pages
    found = find_pages(path, limit=max_pages + 1)
    if found.count == 0:
        return failed("pdf", problem)
    error = f"{problem}; {found.count} pages found by {found.method}"
    if found.count > max_pages:
        return from_page_colours(
            "pdf", over_page_limit(max_pages), paper_size=found.paper,
            error=f"{error}: more than {max_pages} pages (counted as {max_pages + 1})",
            limits_hit=("pages",),
        )
    document = _repaired_copy(found, sandbox) or path
    rendering = _ghostscript.render(document, pdf=True, sandbox=sandbox)
    colours, render_error, limits_hit = _ghostscript.merge_rendering(found.count, rendering)
    if render_error:
        error = f"{error}; {render_error}"
    return from_page_colours(
        "pdf", colours, paper_size=found.paper, error=error, limits_hit=limits_hit
    )


def find_pages(path: str, *, limit: int) -> FoundPages:
    """The pages of a damaged PDF, found as leniently as the module docstring says (at most
    *limit* are collected)."""
    try:
        import pypdf
        from pypdf.generic import DictionaryObject, IndirectObject

        reader = pypdf.PdfReader(path, strict=False)
    except Exception:
        return _scan_bytes(path, limit)

    found = FoundPages()
    try:
        for page in reader.pages:
            found.objects.append(page)
            if len(found.objects) >= limit:
                break
        found.method = "pypdf's page tree"
    except Exception:
        found.objects = []
    if not found.objects:
        found.method = "a scan of the page objects"
        for number, generation in _object_numbers(reader):
            try:
                obj = reader.get_object(IndirectObject(number, generation, reader))
            except Exception:
                continue
            if isinstance(obj, DictionaryObject) and obj.get("/Type") == "/Page":
                found.objects.append(obj)
                if len(found.objects) >= limit:
                    break
    if not found.objects:
        return _scan_bytes(path, limit)
    found.count = len(found.objects)
    found.paper = _paper_of(found.objects[0])
    return found


def _object_numbers(reader) -> list[tuple[int, int]]:
    numbers: set[tuple[int, int]] = set()
    for generation, table in getattr(reader, "xref", {}).items():
        numbers.update((number, generation) for number in table)
    numbers.update((number, 0) for number in getattr(reader, "xref_objStm", {}))
    return sorted(numbers)


def _scan_bytes(path: str, limit: int) -> FoundPages:
    try:
        with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            count = 0
            for _ in _PAGE_OBJECT.finditer(data):
                count += 1
                if count >= limit:
                    break
    except (OSError, ValueError):
        return FoundPages()
    return FoundPages(count=count, method="a byte scan for /Type /Page")


def _inherited(page, key: str):
    """*key* of *page*, or of the nearest ancestor that has it."""
    node = page
    for _ in range(_MAX_PARENTS):
        try:
            if key in node:
                return node[key]
            node = node["/Parent"].get_object()
        except Exception:
            return None
    return None


def _paper_of(page) -> str:
    try:
        box = [float(v) for v in _inherited(page, "/MediaBox")]
        unit = float(page.get("/UserUnit", 1.0))
        return _paper.paper_name(abs(box[2] - box[0]) * unit, abs(box[3] - box[1]) * unit)
    except Exception:
        return "unknown"


def _repaired_copy(found: FoundPages, sandbox: Sandbox) -> str | None:
    """The found pages as a new, well-formed PDF in the job's directory (None if impossible)."""
    if not found.objects:
        return None
    try:
        import pypdf
        from pypdf import PageObject
        from pypdf.generic import NameObject

        writer = pypdf.PdfWriter()
        for obj in found.objects:
            page = obj if isinstance(obj, PageObject) else _page_object(obj)
            for key in _INHERITED:
                if key not in page:
                    value = _inherited(obj, key)
                    if value is not None:
                        page[NameObject(key)] = value
            writer.add_page(page)
        with sandbox.create("repaired.pdf") as out:
            writer.write(out)
            return out.name
    except Exception:
        return None


def _page_object(obj):
    from pypdf import PageObject

    page = PageObject(pdf=getattr(obj, "pdf", None), indirect_reference=obj.indirect_reference)
    page.update(obj)
    return page
