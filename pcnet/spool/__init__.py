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
Ghostscript runs with a timeout. :func:`analyse_command` is the administrators' command
``pcnet analyse FILE...``.
"""

from __future__ import annotations

import gzip
import mmap
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from . import _detect, _ghostscript, _paper
from ._cli import analyse_command
from ._jpeg import analyse_jpeg
from ._pcl import analyse_pcl5
from ._pclxl import analyse_pclxl
from ._pdf import analyse_pdf
from ._postscript import analyse_postscript
from ._pwg import analyse_pwg
from ._result import FALLBACK_PAGES, FORMATS, SpoolAnalysis, failed
from ._text import analyse_text

__all__ = [
    "DEFAULT_TIMEOUT",
    "FALLBACK_PAGES",
    "FORMATS",
    "SpoolAnalysis",
    "analyse",
    "analyse_command",
]

# Seconds one Ghostscript run may take (a whole document). Large, image-heavy jobs render at
# some 10-100 pages a second at the analysis resolution; this leaves room for thousands.
DEFAULT_TIMEOUT = 120.0
# Decompressed size allowed for a gzip-compressed job (a "zip bomb" guard).
MAX_DECOMPRESSED = 2 * 1024**3

_HEAD = 65536


def analyse(
    path: str | os.PathLike,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    default_paper: str = "Letter",
) -> SpoolAnalysis:
    """Analyse the spool file at *path*.

    *default_paper* is the paper assumed for formats that do not state one (text, JPEG, PCL
    without a page size command, PostScript without size information): the queue's default
    media, ``Letter`` being CUPS's own default. *timeout* bounds each Ghostscript run.
    """
    path = os.fspath(path)
    default_paper = _paper.name_from_keyword(default_paper) or default_paper
    try:
        return _analyse(path, timeout=timeout, default_paper=default_paper)
    except _ghostscript.GhostscriptMissing as error:
        return failed("unknown", str(error))
    except MemoryError:
        return failed("unknown", "the file is too large to analyse in memory")
    except OSError as error:
        return failed("unknown", f"cannot read the spool file: {error.strerror or error}")
    except Exception as error:  # never let one odd file stop the provider; log it instead
        return failed("unknown", f"analysis failed: {type(error).__name__}: {error}")


def _analyse(
    path: str, *, timeout: float, default_paper: str, nested: bool = False
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

    if kind == "gzip" and not nested:
        return _analyse_gzip(path, timeout=timeout, default_paper=default_paper)
    if kind == "pdf" or kind == "postscript":
        with _body_file(path, pjl) as body:
            if kind == "pdf":
                return analyse_pdf(body, timeout=timeout)
            return analyse_postscript(body, timeout=timeout, default_paper=default_paper, pjl=pjl)
    if kind == "pcl5":
        with _mapped(path) as data:
            return analyse_pcl5(data, pjl=pjl, default_paper=default_paper)
    if kind == "pclxl":
        with _mapped(path) as data:
            return analyse_pclxl(data, pjl=pjl, default_paper=default_paper)
    if kind == "pwg-raster":
        with open(path, "rb") as file:
            return analyse_pwg(file)
    if kind == "jpeg":
        return analyse_jpeg(path, default_paper=default_paper)
    if kind == "text":
        with open(path, "rb") as file:
            return analyse_text(file.read(), default_paper=default_paper)
    return failed("unknown", "unrecognised spool file format")


def _analyse_gzip(path: str, *, timeout: float, default_paper: str) -> SpoolAnalysis:
    """A gzip-compressed job: PWG raster is read as a stream, anything else unpacked first."""
    try:
        with gzip.open(path, "rb") as stream:
            head = stream.read(_HEAD)
        if _detect.sniff(head) == "pwg-raster":
            with gzip.open(path, "rb") as stream:
                return analyse_pwg(stream)
        with tempfile.TemporaryDirectory(prefix="pcnet-spool-") as directory:
            unpacked = os.path.join(directory, "job")
            with gzip.open(path, "rb") as stream, open(unpacked, "wb") as out:
                _copy_limited(stream, out, MAX_DECOMPRESSED)
            return _analyse(unpacked, timeout=timeout, default_paper=default_paper, nested=True)
    except (OSError, EOFError, zlib.error) as error:
        return failed("unknown", f"cannot decompress the gzip spool file: {error}")


def _copy_limited(source, target, limit: int) -> None:
    copied = 0
    while True:
        block = source.read(1 << 20)
        if not block:
            return
        copied += len(block)
        if copied > limit:
            raise OSError(f"decompresses to more than {limit} bytes")
        target.write(block)


@contextmanager
def _body_file(path: str, pjl: _detect.PjlHeader) -> Iterator[str]:
    """The job's PostScript/PDF body as a file of its own, without the PJL wrapper."""
    if not pjl.present:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="pcnet-spool-") as directory:
        body = os.path.join(directory, "body")
        with open(path, "rb") as source, open(body, "wb") as target:
            source.seek(pjl.body_offset)
            shutil.copyfileobj(source, target)
        yield body


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
