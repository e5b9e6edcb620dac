"""The result of analysing one spool file, and the documented fallback for files that fail.

A failed analysis must never charge nothing: when a file cannot be analysed the result says so
(``error``), marks its figures as a fallback (``fallback=True``) and charges what
:data:`FALLBACK_PAGES` says, every page counted as colour, so the job costs at least one colour
page. When part of the analysis worked (the page count is known but the colour rendering failed)
the known figures are kept and only the unknown part falls back (unrendered pages count as colour).
"""

from __future__ import annotations

from dataclasses import dataclass, field

FORMATS = ("pdf", "postscript", "pcl5", "pclxl", "pwg-raster", "text", "jpeg", "unknown")

FALLBACK_PAGES = 1
FALLBACK_PAPER = "unknown"


@dataclass(frozen=True)
class SpoolAnalysis:
    """What a print job's spool file asks a printer to do, for charging it.

    ``pages`` counts the physical page images (sides) of one copy; ``colour_page_numbers``
    lists the 1-based numbers of the pages counted as colour, so ``colour_pages`` is its length.
    ``copies`` is what the file itself requests (1 when the format cannot say). ``fallback``
    is true when the figures come from the documented fallback rather than a full analysis;
    ``error`` then says why.
    """

    format: str
    pages: int
    colour_pages: int
    duplex: bool
    copies: int
    paper_size: str
    error: str | None = None
    fallback: bool = False
    colour_page_numbers: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"unknown spool format {self.format!r}")
        if self.pages < 1:
            # A zero-page result would print for free; failures go through failed() instead.
            raise ValueError("a spool analysis always counts at least one page")
        if self.colour_pages != len(self.colour_page_numbers):
            raise ValueError("colour_pages must equal the number of colour page numbers")
        if any(not 1 <= n <= self.pages for n in self.colour_page_numbers):
            raise ValueError("colour page numbers must lie within the page count")
        if self.copies < 1:
            raise ValueError("copies must be at least 1")
        if self.fallback and not self.error:
            raise ValueError("a fallback result must say why (error)")

    @property
    def grey_pages(self) -> int:
        return self.pages - self.colour_pages

    def to_json(self) -> dict:
        """A JSON-ready dict of every field (colour page numbers as a list)."""
        return {
            "format": self.format,
            "pages": self.pages,
            "colour_pages": self.colour_pages,
            "colour_page_numbers": list(self.colour_page_numbers),
            "duplex": self.duplex,
            "copies": self.copies,
            "paper_size": self.paper_size,
            "error": self.error,
            "fallback": self.fallback,
        }


def from_page_colours(
    format: str,
    page_colours: list[bool],
    *,
    duplex: bool = False,
    copies: int = 1,
    paper_size: str,
    error: str | None = None,
) -> SpoolAnalysis:
    """Build a result from one colour flag per page (an error makes it a fallback)."""
    numbers = tuple(i + 1 for i, colour in enumerate(page_colours) if colour)
    return SpoolAnalysis(
        format=format,
        pages=len(page_colours),
        colour_pages=len(numbers),
        duplex=duplex,
        copies=max(1, int(copies)),
        paper_size=paper_size,
        error=error,
        fallback=error is not None,
        colour_page_numbers=numbers,
    )


def failed(
    format: str,
    error: str,
    *,
    pages: int = FALLBACK_PAGES,
    duplex: bool = False,
    copies: int = 1,
    paper_size: str = FALLBACK_PAPER,
) -> SpoolAnalysis:
    """The documented fallback: *pages* (at least one), every one of them colour."""
    pages = max(FALLBACK_PAGES, int(pages))
    return from_page_colours(
        format, [True] * pages, duplex=duplex, copies=copies, paper_size=paper_size, error=error
    )
