"""The result of analysing one spool file, and the documented fallback for files that fail.

A failed analysis must never charge nothing: when a file cannot be analysed the result says so
(``error``), marks its figures as a fallback (``fallback=True``) and charges what
:data:`FALLBACK_PAGES` says, every page counted as colour, so the job costs at least one colour
page. When part of the analysis worked (the page count is known but the colour rendering failed)
the known figures are kept and only the unknown part falls back (unrendered pages count as colour).

What a file claims is bounded too (:func:`bounded`): more pages than the configured maximum N is
reported as N + 1 pages, more copies than the maximum M as M + 1 copies, flagged in
``limits_hit``, so that absurd claims reach the server as "over the limit", never as numbers
that overflow its ledger.
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
    ``error`` then says why. ``limits_hit`` names the analysis limits the file ran into:
    ``pages`` and ``copies`` (its claim was over the maximum, reported as maximum + 1),
    ``time``, ``cpu``, ``memory`` and ``output`` (a helper was stopped; the figures are the
    documented fallback for that case).
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
    limits_hit: tuple[str, ...] = field(default=())

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
            "limits_hit": list(self.limits_hit),
        }


def from_page_colours(
    format: str,
    page_colours: list[bool],
    *,
    duplex: bool = False,
    copies: int = 1,
    paper_size: str,
    error: str | None = None,
    limits_hit: tuple[str, ...] = (),
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
        limits_hit=tuple(limits_hit),
    )


def failed(
    format: str,
    error: str,
    *,
    pages: int = FALLBACK_PAGES,
    duplex: bool = False,
    copies: int = 1,
    paper_size: str = FALLBACK_PAPER,
    limits_hit: tuple[str, ...] = (),
) -> SpoolAnalysis:
    """The documented fallback: *pages* (at least one), every one of them colour."""
    pages = max(FALLBACK_PAGES, int(pages))
    return from_page_colours(
        format, [True] * pages, duplex=duplex, copies=copies, paper_size=paper_size, error=error,
        limits_hit=limits_hit,
    )


class PageLimitReached(Exception):
    """Raised by a parser once a file has shown more pages than the maximum: reading on could
    only cost time and memory (a 1 MB file of form feeds holds a million PCL pages)."""


def over_page_limit(max_pages: int, colours: list[bool] | None = None) -> list[bool]:
    """Colour flags for a file of more than *max_pages* pages: N + 1 of them, the first N as
    judged in *colours* (colour where not judged), the extra one colour."""
    judged = list((colours or [])[:max_pages])
    return judged + [True] * (max_pages + 1 - len(judged))


def bounded(result: SpoolAnalysis, *, max_pages: int, max_copies: int) -> SpoolAnalysis:
    """*result* with its pages and copies held to the maxima: over N is N + 1, flagged."""
    hit = list(result.limits_hit)
    # A format's analyser may have reported "over the maximum" (N + 1, flagged) itself.
    over_pages = result.pages > max_pages and not (
        "pages" in hit and result.pages == max_pages + 1)
    over_copies = result.copies > max_copies and not (
        "copies" in hit and result.copies == max_copies + 1)
    if not (over_pages or over_copies):
        return result
    notes = [result.error] if result.error else []
    pages, copies, numbers = result.pages, result.copies, result.colour_page_numbers
    if over_pages:
        notes.append(f"the file has more than {max_pages} pages (counted as {max_pages + 1})")
        pages = max_pages + 1
        # The pages past the maximum are not judged: the one that stands for them is colour.
        numbers = tuple(n for n in numbers if n <= max_pages) + (pages,)
        hit += [] if "pages" in hit else ["pages"]
    if over_copies:
        notes.append(f"the file asks for {copies} copies, more than {max_copies} "
                     f"(counted as {max_copies + 1})")
        copies = max_copies + 1
        hit += [] if "copies" in hit else ["copies"]
    return SpoolAnalysis(
        format=result.format,
        pages=pages,
        colour_pages=len(numbers),
        duplex=result.duplex,
        copies=copies,
        paper_size=result.paper_size,
        error="; ".join(notes),
        fallback=True,
        colour_page_numbers=numbers,
        limits_hit=tuple(hit),
    )
