"""PDF spool files: pages and requests from the document structure, colour from rendering.

The page count, paper size and print requests come from a real PDF parser (pikepdf, i.e.
qpdf), which reads cross-reference streams and compressed object streams and repairs damaged
cross-reference tables the way viewers do; a byte search for ``/Type /Page`` would miss pages
kept in object streams and count deleted or unused ones.

* pages: the page tree's leaf count;
* paper size: the first page's ``/MediaBox`` (inherited boxes and ``/UserUnit`` honoured);
* duplex and copies: the catalog's ``/ViewerPreferences`` ``/Duplex`` and ``/NumCopies``
  (PDF 1.7), which is where a PDF asks for them;
* colour: every page rendered by Ghostscript (see :mod:`._ghostscript` and :mod:`._colour`).

A file qpdf refuses, or whose page tree holds no page, is counted leniently
(:mod:`._damaged_pdf`) rather than charged as one page. A page count over the configured maximum
is not rendered at all: it is reported as the maximum + 1 (``limits_hit`` ``pages``).
"""

from __future__ import annotations

import pikepdf

from . import _ghostscript, _paper
from ._damaged_pdf import analyse_damaged_pdf
from ._ghostscript import merge_rendering
from ._result import SpoolAnalysis, failed, from_page_colours, over_page_limit
from ._sandbox import Sandbox

__all__ = ["analyse_pdf", "merge_rendering"]


def analyse_pdf(path: str, *, sandbox: Sandbox) -> SpoolAnalysis:
    try:
        with pikepdf.open(path) as pdf:
            pages = len(pdf.pages)
            paper = _first_page_paper(pdf) if pages else "unknown"
            duplex, copies = _viewer_preferences(pdf)
    except pikepdf.PasswordError:
        return failed("pdf", "the PDF is encrypted with a user password")
    except Exception as error:  # qpdf raises several types for damaged files
        return analyse_damaged_pdf(path, f"cannot read the PDF: {_short(error)}", sandbox=sandbox)
    if pages == 0:
        return analyse_damaged_pdf(path, "the PDF's page tree has no pages", sandbox=sandbox)
    max_pages = sandbox.limits.max_pages
    if pages > max_pages:
        # Rendering it would only confirm that it is over the limit; the count is exact.
        return from_page_colours(
            "pdf", over_page_limit(max_pages), duplex=duplex, copies=copies, paper_size=paper,
            error=f"the PDF has {pages} pages, more than {max_pages} (counted as {max_pages + 1})",
            limits_hit=("pages",),
        )

    rendering = _ghostscript.render(path, pdf=True, sandbox=sandbox)
    colours, error, limits_hit = merge_rendering(pages, rendering)
    return from_page_colours(
        "pdf", colours, duplex=duplex, copies=copies, paper_size=paper, error=error,
        limits_hit=limits_hit,
    )


def _first_page_paper(pdf: pikepdf.Pdf) -> str:
    try:
        page = pdf.pages[0]
        box = [float(v) for v in page.mediabox]
        unit = float(page.obj.get("/UserUnit", 1.0))
    except (TypeError, ValueError, IndexError, pikepdf.PdfError):
        return "unknown"  # a damaged box does not stop the page count
    width = abs(box[2] - box[0]) * unit
    height = abs(box[3] - box[1]) * unit
    return _paper.paper_name(width, height)


def _viewer_preferences(pdf: pikepdf.Pdf) -> tuple[bool, int]:
    preferences = pdf.Root.get("/ViewerPreferences")
    if not isinstance(preferences, pikepdf.Dictionary):
        return False, 1
    duplex_request = preferences.get("/Duplex")
    duplex = duplex_request is not None and str(duplex_request) in (
        "/DuplexFlipShortEdge",
        "/DuplexFlipLongEdge",
    )
    copies = 1
    number = preferences.get("/NumCopies")
    if number is not None:
        try:
            copies = max(1, int(number))
        except (TypeError, ValueError):
            copies = 1
    return duplex, copies


def _short(error: Exception) -> str:
    return str(error).splitlines()[0][:200] if str(error) else type(error).__name__
