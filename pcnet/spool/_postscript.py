"""PostScript spool files: Ghostscript's rendering first, DSC comments as the fallback.

PostScript is a program, so its DSC comments (``%%Pages:``, ``%%DocumentMedia:``,
``%%BoundingBox:``) are promises, not facts: an application can write ``%%Pages: 9`` on a
one-page job, or leave the comments out. The colour decision needs every page rendered anyway
(:mod:`._ghostscript`), so the rendering's page count, at no extra cost, is the count used;
the DSC comments are read too and serve when Ghostscript fails, times out or renders nothing.
Likewise duplex and copies come from what the program actually asks of the page device
(``setpagedevice`` ``/Duplex``, ``/NumCopies``, or ``#copies``), which catches requests made in
procedures and ignores ``/Duplex true`` text in a procedure that is never called; DSC
``%%Requirements:`` and ``*Duplex`` features are the fallback.

A job that cannot be run to its end within the analysis limits (time, CPU, memory, temporary
space) has no trustworthy page count: how far it got depends on the machine, and its DSC
comments are the job's own unverified claim. It is reported as more than the page maximum N
(N + 1 pages, every one colour, ``limits_hit`` naming the limit and ``pages``), so the server's
page limit denies it. A job that renders more than N pages is stopped there and reported the
same way (its first N pages as judged).

Paper size: the first ``setpagedevice /PageSize`` the job makes, else ``%%DocumentMedia``,
else a ``%%BoundingBox`` that is exactly a standard sheet, else *default_paper* (what the
queue's default media would be).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from . import _ghostscript, _paper
from ._detect import PjlHeader
from ._result import SpoolAnalysis, from_page_colours, over_page_limit
from ._sandbox import MACHINE_LIMITS, Sandbox

# DSC header and trailer comments live in the first and last few kilobytes.
_HEAD_BYTES = 256 * 1024
_TAIL_BYTES = 64 * 1024

_PAGES = re.compile(rb"^%%Pages:[ \t]*(\d+)", re.MULTILINE)
_MEDIA = re.compile(rb"^%%DocumentMedia:[ \t]*\S+[ \t]+([\d.]+)[ \t]+([\d.]+)", re.MULTILINE)
_BBOX = re.compile(
    rb"^%%BoundingBox:[ \t]*(-?[\d.]+)[ \t]+(-?[\d.]+)[ \t]+(-?[\d.]+)[ \t]+(-?[\d.]+)",
    re.MULTILINE,
)
_REQUIREMENTS = re.compile(rb"^%%Requirements:([^\r\n]*)", re.MULTILINE)
_DUPLEX_FEATURE = re.compile(
    rb"^%%(?:Begin|Include)Feature:[ \t]*\*Duplex[ \t]+(\S+)", re.MULTILINE
)
_NUMCOPIES = re.compile(rb"numcopies\((\d+)\)")


@dataclass(frozen=True)
class DscComments:
    pages: int | None = None
    page_comments: int = 0
    media: tuple[float, float] | None = None
    bounding_box: tuple[float, float, float, float] | None = None
    duplex: bool | None = None
    copies: int | None = None


def analyse_postscript(
    path: str, *, sandbox: Sandbox, default_paper: str, pjl: PjlHeader
) -> SpoolAnalysis:
    dsc = read_dsc(path)
    rendering = _ghostscript.render(path, pdf=False, sandbox=sandbox)

    duplex = _first_known(rendering.duplex, dsc.duplex, pjl.duplex, False)
    copies = rendering.copies or dsc.copies or pjl.copies or 1
    paper = _paper_size(rendering, dsc, pjl, default_paper)

    colours = rendering.page_colours
    if rendering.limit is not None:
        max_pages = sandbox.limits.max_pages
        if rendering.limit in MACHINE_LIMITS:
            colours, hit = [], (rendering.limit, "pages")
            note = (f"; a PostScript job that cannot be run to its end within the limits is "
                    f"counted as more than {max_pages} pages ({max_pages + 1})")
        else:
            hit, note = ("pages",), f" (counted as {max_pages + 1})"
        colours = over_page_limit(max_pages, colours)
        if pjl.grey:
            colours = [False] * len(colours)
        return from_page_colours(
            "postscript", colours, duplex=duplex, copies=copies, paper_size=paper,
            error=f"{rendering.error}{note}", limits_hit=hit,
        )
    if pjl.grey:
        # The job tells the printer to render in grey (a driver's "print in greyscale").
        colours = [False] * len(colours)
    if rendering.error is None and colours:
        return from_page_colours(
            "postscript", colours, duplex=duplex, copies=copies, paper_size=paper
        )

    # Fallback: trust the DSC page count if it is larger than what was rendered; pages not
    # rendered are charged as colour.
    error = rendering.error or "Ghostscript rendered no page"
    declared = max(dsc.pages or 0, dsc.page_comments)
    pages = max(len(colours), declared, 1)
    colours = list(colours) + [not pjl.grey] * (pages - len(colours))
    return from_page_colours(
        "postscript", colours, duplex=duplex, copies=copies, paper_size=paper, error=error
    )


def read_dsc(path: str) -> DscComments:
    """Read the DSC header and trailer comments (and count ``%%Page:`` comments)."""
    size = os.path.getsize(path)
    with open(path, "rb") as file:
        head = file.read(_HEAD_BYTES)
        tail = b""
        if size > _HEAD_BYTES:
            file.seek(max(_HEAD_BYTES, size - _TAIL_BYTES))
            tail = file.read()
        page_comments = _count_in_file(file, b"\n%%Page:")

    header = _header(head)
    trailer = tail or head
    pages = _last_int(_PAGES, header) or _last_int(_PAGES, trailer)
    media = _document_media(header)
    box = _BBOX.search(header) or _BBOX.search(trailer)
    bounding_box = tuple(float(v) for v in box.groups()) if box else None
    requirements = b" ".join(m.group(1) for m in _REQUIREMENTS.finditer(header))
    duplex = None
    if b"duplex" in requirements.lower():
        duplex = True
    feature = _DUPLEX_FEATURE.search(head)
    if feature:
        duplex = feature.group(1).lower() not in (b"none", b"false", b"simplex")
    copies_match = _NUMCOPIES.search(requirements)
    copies = int(copies_match.group(1)) if copies_match else None
    return DscComments(
        pages=pages,
        page_comments=page_comments,
        media=media,
        bounding_box=bounding_box,  # type: ignore[arg-type]
        duplex=duplex,
        copies=copies if copies and copies > 0 else None,
    )


def _count_in_file(file, needle: bytes) -> int:
    """Count *needle* in the whole file, a block at a time."""
    file.seek(0)
    count = 0
    carry = b""
    while True:
        block = file.read(1 << 20)
        if not block:
            return count
        chunk = carry + block
        count += chunk.count(needle)
        # Keep fewer bytes than the needle, so no match is counted twice.
        carry = chunk[-(len(needle) - 1) :]


def _header(head: bytes) -> bytes:
    """The DSC header: up to ``%%EndComments`` (or the prolog), so page data cannot match."""
    end = head.find(b"%%EndComments")
    if end < 0:
        end = head.find(b"%%BeginProlog")
    return head if end < 0 else head[:end]


def _document_media(header: bytes) -> tuple[float, float] | None:
    match = _MEDIA.search(header)
    if not match:
        return None
    width, height = float(match.group(1)), float(match.group(2))
    return (width, height) if width > 0 and height > 0 else None


def _last_int(pattern: re.Pattern, data: bytes) -> int | None:
    values = [int(m.group(1)) for m in pattern.finditer(data)]
    return values[-1] if values else None


def _first_known(*values):
    for value in values:
        if value is not None:
            return value
    return None


def _paper_size(
    rendering: _ghostscript.Rendering, dsc: DscComments, pjl: PjlHeader, default_paper: str
) -> str:
    if rendering.requested_page_size:
        return _paper.paper_name(*rendering.requested_page_size)
    if dsc.media:
        return _paper.paper_name(*dsc.media)
    if dsc.bounding_box:
        llx, lly, urx, ury = dsc.bounding_box
        # Only a box that is a whole standard sheet says anything about the paper; a smaller
        # box is the extent of the drawing.
        if abs(llx) < 1 and abs(lly) < 1 and _paper.is_standard(urx, ury):
            return _paper.paper_name(urx, ury)
    return pjl.paper or default_paper
