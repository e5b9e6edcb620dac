"""Plain text spool files: pages as CUPS's text filter would lay them out.

A text file has no pages of its own; CUPS's ``texttopdf`` filter makes them. Without a PPD
(driverless queues) it uses its built-in layout, which pcnet assumes: 10 characters per inch,
6 lines per inch, margins of 18 pt left and right and 36 pt top and bottom, long lines wrapped,
tabs every 8 columns, a form feed starting a new page. On Letter paper (the filter's own
default) that is 80 columns by 60 lines a page; on A4, 77 by 64. A queue whose PPD sets other
margins or options (``cpi``, ``lpi``, ``columns``) prints a different number of pages, which
this estimate cannot know. The text is printed black: every page is grey (the ``prettyprint``
option's coloured keywords are not assumed).
"""

from __future__ import annotations

from . import _paper
from ._result import SpoolAnalysis, failed, from_page_colours

CHARS_PER_INCH = 10
LINES_PER_INCH = 6
SIDE_MARGINS = 18.0 + 18.0
TOP_BOTTOM_MARGINS = 36.0 + 36.0
TAB_STOP = 8


def layout(paper: str) -> tuple[int, int]:
    """(columns, lines per page) of the text filter's layout on *paper*."""
    try:
        width, height = _paper.paper_points(paper)
    except KeyError:
        width, height = _paper.paper_points("Letter")
    columns = int((width - SIDE_MARGINS) / 72 * CHARS_PER_INCH)
    lines = int((height - TOP_BOTTOM_MARGINS) / 72 * LINES_PER_INCH)
    return columns, lines


def count_pages(
    text: str, columns: int, lines_per_page: int, max_pages: int | None = None
) -> int:
    """Pages the text filter makes of *text* (counting stops past *max_pages*)."""
    limit = max_pages if max_pages is not None else len(text) + 1
    pages = 0
    line = 0
    column = 0
    for character in text:
        if character == "\n":
            column = 0
            line += 1
            if line >= lines_per_page:
                pages += 1
                line = 0
                if pages > limit:
                    return pages
        elif character == "\f":
            if line or column:
                pages += 1
                if pages > limit:
                    return pages
            line = column = 0
        elif character == "\r":
            column = 0
        elif character == "\t":
            column = (column // TAB_STOP + 1) * TAB_STOP
        elif character == "\b":
            column = max(0, column - 1)
        elif character >= " ":
            if column >= columns:  # wrap the long line
                column = 0
                line += 1
                if line >= lines_per_page:
                    pages += 1
                    line = 0
                    if pages > limit:
                        return pages
            column += 1
    if line or column:
        pages += 1
    return pages


def analyse_text(
    data: bytes, *, default_paper: str, max_pages: int | None = None
) -> SpoolAnalysis:
    columns, lines = layout(default_paper)
    pages = count_pages(data.decode("utf-8", errors="replace"), columns, lines, max_pages)
    if pages == 0:
        return failed(
            "text", "the text file prints nothing (only blank space)", paper_size=default_paper
        )
    return from_page_colours("text", [False] * pages, paper_size=default_paper)
