"""Spool file analysis: what a print job will print, so the Print Provider can charge it.

:func:`analyse` reads one spool file and returns a :class:`SpoolAnalysis`: its format, the
number of pages (sides) of one copy, which of them are colour, duplex, the copies the file
itself requests and the paper size. It recognises PDF, PostScript, PCL 5, PCL XL, PWG/CUPS
raster (plain or gzip-compressed), plain text and JPEG from the file's own bytes, including jobs
wrapped in a PJL header. Colour is judged from pixels (see :mod:`pcnet.spool._colour` and
``docs/spool-analysis.md``): Ghostscript renders PDF and PostScript, the other formats are read
directly.

:func:`analyse` is synchronous and free of Twisted (the provider runs it in a thread); it never
raises for a bad file: a file that cannot be analysed gets ``error`` set and the documented
fallback figures (``fallback=True``; at least one page, unknown pages charged as colour).
Each file gets a private directory (for unpacking gzip'd or PJL-wrapped jobs) and Ghostscript
runs sandboxed and bounded in it (:mod:`pcnet.spool._sandbox`, :class:`Limits`); pages and
copies over the maxima are reported as maximum + 1 and flagged (``limits_hit``).
:func:`analyse_command` is the administrators' command ``pcnet analyse FILE...``.
"""

from __future__ import annotations

import gzip
import mmap
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from pcnet.domain.model import DEFAULT_PAPER_SIZE

from . import _detect, _ghostscript, _paper
from ._cli import analyse_command
from ._jpeg import analyse_jpeg
from ._pcl import analyse_pcl5
from ._pclxl import analyse_pclxl
from ._pdf import analyse_pdf
from ._postscript import analyse_postscript
from ._pwg import analyse_pwg
from ._result import FALLBACK_PAGES, FORMATS, SpoolAnalysis, bounded, failed, over_page_limit
from ._result import from_page_colours
from ._sandbox import SANDBOX_MODES, Limits, Sandbox, SandboxUnavailable
from ._sandbox import resolve_mode as sandbox_mode
from ._text import analyse_text

__all__ = [
    "DEFAULT_TIMEOUT",
    "FALLBACK_PAGES",
    "FORMATS",
    "SANDBOX_MODES",
    "Limits",
    "SandboxUnavailable",
    "SpoolAnalysis",
    "analyse",
    "analyse_command",
    "sandbox_mode",
]

# Seconds one Ghostscript run may take (a whole document). Large, image-heavy jobs render at
# some 10-100 pages a second at the analysis resolution; this leaves room for thousands.
DEFAULT_TIMEOUT = Limits().timeout

_HEAD = 65536


class _TooLarge(Exception):
    """A gzip'd or PJL-wrapped job unpacks to more than the limit allows."""


def analyse(
    path: str | os.PathLike,
    *,
    timeout: float | None = None,
    default_paper: str = DEFAULT_PAPER_SIZE,
    limits: Limits | None = None,
) -> SpoolAnalysis:
    """Analyse the spool file at *path*.

    *default_paper* is the paper assumed for formats that do not state one (text, JPEG, PCL
    without a page size command, PostScript without size information): the Print Provider's
    ``[analysis] paper_size``, by default pcnet's one default paper size
    (``pcnet.domain.model.DEFAULT_PAPER_SIZE``, A4). *limits* bound the analysis (the provider's
    ``[analysis]`` settings; defaults: :class:`Limits`); *timeout*, if given, replaces its
    wall-clock bound for each Ghostscript run.
    """
    path = os.fspath(path)
    default_paper = _paper.name_from_keyword(default_paper) or default_paper
    limits = (limits or Limits()).with_timeout(timeout)
    try:
        with Sandbox(limits) as sandbox:
            result = _analyse(path, sandbox=sandbox, default_paper=default_paper)
        return bounded(result, max_pages=limits.max_pages, max_copies=limits.max_copies)
    except _TooLarge as error:
        # How many pages it holds is unknown, and finding out is what the limit forbids: it is
        # reported as over the page maximum, so the server's page limit denies it.
        return from_page_colours(
            "unknown", over_page_limit(limits.max_pages), paper_size="unknown",
            error=f"{error}; counted as more than {limits.max_pages} pages",
            limits_hit=("size", "pages"),
        )
    except (_ghostscript.GhostscriptMissing, SandboxUnavailable) as error:
        return failed("unknown", str(error))
    except MemoryError:
        return failed("unknown", "the file is too large to analyse in memory")
    except OSError as error:
        return failed("unknown", f"cannot read the spool file: {error.strerror or error}")
    except Exception as error:  # never let one odd file stop the provider; log it instead
        return failed("unknown", f"analysis failed: {type(error).__name__}: {error}")


def _analyse(
    path: str, *, sandbox: Sandbox, default_paper: str, nested: bool = False
) -> SpoolAnalysis:
    with open(path, "rb") as file:
        head = file.read(_HEAD)
    if not head:
        return failed("unknown", "the spool file is empty")

    pjl = _detect.read_pjl(head)
    if pjl.present:
        kind = pjl.language or _detect.sniff(head[pjl.body_offset :])
    else:
        kind = _detect.sniff(head)

    max_pages = sandbox.limits.max_pages
    if kind == "gzip" and not nested:
        return _analyse_gzip(path, sandbox=sandbox, default_paper=default_paper)
    if kind == "pdf" or kind == "postscript":
        with _body_file(path, pjl, sandbox) as body:
            if kind == "pdf":
                return analyse_pdf(body, sandbox=sandbox)
            return analyse_postscript(body, sandbox=sandbox, default_paper=default_paper, pjl=pjl)
    if kind == "pcl5":
        with _mapped(path) as data:
            return analyse_pcl5(data, pjl=pjl, default_paper=default_paper, max_pages=max_pages)
    if kind == "pclxl":
        with _mapped(path) as data:
            return analyse_pclxl(data, pjl=pjl, default_paper=default_paper, max_pages=max_pages)
    if kind == "pwg-raster":
        with open(path, "rb") as file:
            return analyse_pwg(file, max_pages=max_pages)
    if kind == "jpeg":
        return analyse_jpeg(path, default_paper=default_paper)
    if kind == "text":
        with open(path, "rb") as file:
            return analyse_text(file.read(), default_paper=default_paper, max_pages=max_pages)
    return failed("unknown", "unrecognised spool file format")


def _analyse_gzip(path: str, *, sandbox: Sandbox, default_paper: str) -> SpoolAnalysis:
    """A gzip-compressed job: PWG raster is read as a stream, anything else unpacked first
    (into the job's private directory, at most ``max_unpacked_mb``)."""
    try:
        with gzip.open(path, "rb") as stream:
            head = stream.read(_HEAD)
        if _detect.sniff(head) == "pwg-raster":
            with gzip.open(path, "rb") as stream:
                return analyse_pwg(stream, max_pages=sandbox.limits.max_pages)
        with gzip.open(path, "rb") as stream, sandbox.create("unpacked") as out:
            _copy_limited(stream, out, sandbox.limits.max_unpacked_mb)
        return _analyse(out.name, sandbox=sandbox, default_paper=default_paper, nested=True)
    except (OSError, EOFError, zlib.error) as error:
        return failed("unknown", f"cannot decompress the gzip spool file: {error}")


def _copy_limited(source, target, limit_mb: int) -> None:
    limit = limit_mb * 1024 * 1024
    copied = 0
    while True:
        block = source.read(1 << 20)
        if not block:
            return
        copied += len(block)
        if copied > limit:
            raise _TooLarge(f"the job unpacks to more than {limit_mb} MB (max_unpacked_mb)")
        target.write(block)


@contextmanager
def _body_file(path: str, pjl: _detect.PjlHeader, sandbox: Sandbox) -> Iterator[str]:
    """The job's PostScript/PDF body as a file of its own, without the PJL wrapper (written in
    the job's private directory, removed with it)."""
    if not pjl.present:
        yield path
        return
    with open(path, "rb") as source, sandbox.create("body") as target:
        source.seek(pjl.body_offset)
        _copy_limited(source, target, sandbox.limits.max_unpacked_mb)
    yield target.name


@contextmanager
def _mapped(path: str) -> Iterator[bytes]:
    """The whole file as bytes-like memory, mapped rather than read."""
    with open(path, "rb") as file:
        data = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        yield data  # type: ignore[misc]
    finally:
        try:
            data.close()
        except BufferError:
            pass  # a parser still holds a view (e.g. in a traceback); the GC will unmap it
