"""Render a PDF or PostScript job with one Ghostscript process to judge each page's colour.

One ``gs`` process renders every page of the document at :data:`._colour.RENDER_DPI` dpi to
``ppmraw`` on its standard output; pages are read and judged one at a time as they arrive, so
memory stays at one page whatever the document's length. The number of pages Ghostscript
outputs is the document's true page count (it runs the document, so PostScript whose DSC
comments lie cannot fool it).

A small PostScript prologue runs before the document, so that what the document asks of the
page device is reported rather than guessed from its text:

* ``setpagedevice`` is wrapped (in ``userdict``, where the document finds it) to report
  ``/Duplex``, ``/NumCopies`` and the first ``/PageSize``, and to drop ``/NumCopies`` so the
  rendering holds one copy of each page (copies are reported separately);
* an ``EndPage`` procedure reports each page's size and the document's ``#copies`` (the
  Level 1 way to ask for copies), then resets ``#copies`` to 1 for the same reason.

Reports go to standard error as lines tagged with a random per-run token, so a document's own
output cannot pass for them; stderr is drained as it comes, keeping only reports and the last
messages. Ghostscript runs with ``-dSAFER`` and a timeout; a crash, an error or a timeout is
reported in :attr:`Rendering.error` together with whatever pages were rendered.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import IO

from PIL import Image

from . import _colour

# Pixels decoded per read when judging a page: bounds memory for absurd page sizes.
_CHUNK_BYTES = 4 * 1024 * 1024
# What is kept of Ghostscript's stderr: report lines (a few per page) and the last messages.
_MAX_REPORTS = 1_000_000
_TAIL_LINES = 50
_MAX_LINE = 8192


class GhostscriptMissing(RuntimeError):
    """Ghostscript (``gs``) is not installed."""


@dataclass
class Rendering:
    """What Ghostscript saw: one colour flag per output page, and the page device requests."""

    page_colours: list[bool] = field(default_factory=list)
    page_sizes: list[tuple[float, float]] = field(default_factory=list)
    requested_page_size: tuple[float, float] | None = None
    duplex: bool | None = None
    copies: int | None = None
    error: str | None = None


def ghostscript() -> str:
    """The path of the ``gs`` executable."""
    path = shutil.which("gs")
    if path is None:
        raise GhostscriptMissing("Ghostscript (gs) is not installed")
    return path


def _prologue(token: str) -> str:
    # Written for PostScript Level 2 as Ghostscript runs it; see the module docstring.
    return f"""
userdict begin
/pcnet_out (%stderr) (w) file def
/pcnet_w {{ pcnet_out exch writestring }} bind def
/pcnet_num {{ 40 string cvs pcnet_w }} bind def
/pcnet_begin {{ (\\n{token} ) pcnet_w }} bind def
/pcnet_end {{ (\\n) pcnet_w pcnet_out flushfile }} bind def
/pcnet_endpage {{
  dup 2 ne {{
    pcnet_begin (page ) pcnet_w
    currentpagedevice /PageSize get aload pop exch pcnet_num ( ) pcnet_w pcnet_num
    ( ) pcnet_w /#copies where {{ /#copies get }} {{ 1 }} ifelse pcnet_num
    pcnet_end
    /#copies where {{ dup wcheck {{ /#copies 1 put }} {{ pop }} ifelse }} if
  }} if
}} bind def
/pcnet_setpagedevice systemdict /setpagedevice get def
/setpagedevice {{
  dup length 1 add dict copy
  dup /Duplex known {{
    dup /Duplex get dup type /booleantype eq
    {{ pcnet_begin (duplex ) pcnet_w pcnet_num pcnet_end }} {{ pop }} ifelse
  }} if
  dup /NumCopies known {{
    dup /NumCopies get dup type /integertype eq
    {{ pcnet_begin (copies ) pcnet_w pcnet_num pcnet_end }} {{ pop }} ifelse
    dup /NumCopies undef
  }} if
  dup /PageSize known {{
    dup /PageSize get dup type dup /arraytype eq exch /packedarraytype eq or
    {{ dup length 2 ge
      {{ pcnet_begin (pagesize ) pcnet_w aload length 2 sub {{ pop }} repeat
         exch pcnet_num ( ) pcnet_w pcnet_num pcnet_end }} {{ pop }} ifelse
    }} {{ pop }} ifelse
  }} if
  dup /EndPage known {{
    dup /EndPage get [ /pcnet_endpage load /exec load 4 -1 roll /exec load ] cvx
    1 index exch /EndPage exch put
  }} if
  pcnet_setpagedevice
}} bind def
end
<< /EndPage {{ pcnet_endpage exch pop 2 ne }} bind >> pcnet_setpagedevice
"""


def render(path: str, *, timeout: float, pdf: bool) -> Rendering:
    """Render every page of *path* and judge its colour; never raises for a bad document."""
    token = "PCNET-" + secrets.token_hex(8)
    command = [
        ghostscript(),
        "-q",
        "-dSAFER",
        "-dBATCH",
        "-dNOPAUSE",
        "-dNOINTERPOLATE",
        "-dTextAlphaBits=4",
        "-dGraphicsAlphaBits=4",
        "-sstdout=%stderr",
        "-sDEVICE=ppmraw",
        f"-r{_colour.RENDER_DPI}",
        "-sOutputFile=-",
    ]
    if pdf:
        # Honour the annotations' print flags, as a printed PDF would.
        command.append("-dPrinted")
    # An absolute path can never be taken for a command-line switch.
    command += ["-c", _prologue(token), "-f", os.path.abspath(os.fspath(path))]

    rendering = Rendering()
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    messages = _Messages(process.stderr, token)
    messages.start()
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        process.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        read_error = _read_pages(process.stdout, rendering)
    finally:
        timer.cancel()
        process.stdout.close()
        status = process.wait()
        messages.join()
        process.stderr.close()

    _read_reports(messages.reports, rendering)
    if timed_out.is_set():
        rendering.error = (
            f"Ghostscript timed out after {timeout:g} s "
            f"({len(rendering.page_colours)} pages rendered)"
        )
    elif status != 0:
        rendering.error = f"Ghostscript failed (exit status {status}): {messages.last_error()}"
    elif read_error:
        rendering.error = read_error
    return rendering


class _Messages(threading.Thread):
    """Drain Ghostscript's stderr: keep the prologue's reports and the last other lines.

    A job can print without end (its output goes to stderr too); reading it as it comes,
    keeping bounded amounts, means such a job costs CPU until the timeout, never disk or memory.
    """

    def __init__(self, stream: IO[bytes], token: str) -> None:
        super().__init__(name="pcnet-gs-stderr", daemon=True)
        self.stream = stream
        self.prefix = (token + " ").encode()
        self.reports: list[str] = []
        self.tail: deque[str] = deque(maxlen=_TAIL_LINES)

    def run(self) -> None:
        for line in iter(lambda: self.stream.readline(_MAX_LINE), b""):
            if line.startswith(self.prefix):
                if len(self.reports) < _MAX_REPORTS:
                    self.reports.append(line[len(self.prefix) :].decode("latin-1").strip())
            elif line.strip():
                self.tail.append(line.decode("latin-1").strip())

    def last_error(self) -> str:
        """The most useful line of Ghostscript's error output, for the administrator."""
        for line in self.tail:
            if "Error" in line:
                return line[:200]
        return self.tail[-1][:200] if self.tail else "no message"


def _read_pages(stream: IO[bytes], rendering: Rendering) -> str | None:
    """Judge each PPM page on *stream*; returns a message if the stream is malformed."""
    while True:
        header = _read_ppm_header(stream)
        if header is None:
            return None
        if isinstance(header, str):
            return header
        width, height = header
        rendering.page_colours.append(_judge_page(stream, width, height))


def _read_ppm_header(stream: IO[bytes]) -> tuple[int, int] | str | None:
    magic = stream.read(2)
    if not magic:
        return None
    if magic != b"P6":
        return "Ghostscript wrote something other than a PPM page"
    fields: list[int] = []
    while len(fields) < 3:
        token = b""
        while True:
            byte = stream.read(1)
            if not byte:
                return "Ghostscript's output ended inside a page header"
            if byte == b"#":
                while byte not in (b"\n", b""):
                    byte = stream.read(1)
                continue
            if byte.isspace():
                if token:
                    break
                continue
            token += byte
        fields.append(int(token))
    width, height, maxval = fields
    if maxval != 255:
        return f"Ghostscript wrote a PPM with maxval {maxval}"
    return width, height


def _judge_page(stream: IO[bytes], width: int, height: int) -> bool:
    """Read one page's pixels in strips and count the chromatic ones."""
    row_bytes = width * 3
    rows_per_strip = max(1, _CHUNK_BYTES // max(row_bytes, 1))
    chromatic = 0
    rows_left = height
    while rows_left > 0:
        rows = min(rows_per_strip, rows_left)
        data = stream.read(rows * row_bytes)
        if len(data) < rows * row_bytes:
            # A truncated last page (Ghostscript killed mid-page): judge what arrived.
            rows = len(data) // row_bytes
            if rows == 0:
                break
            data = data[: rows * row_bytes]
            rows_left = rows
        chromatic += _colour.chromatic_pixels(Image.frombytes("RGB", (width, rows), data))
        rows_left -= rows
    return _colour.is_colour(chromatic, width * height)


def _read_reports(reports: list[str], rendering: Rendering) -> None:
    """Apply the prologue's page-device reports (``kind value...``) to *rendering*."""
    copies: list[int] = []
    for report in reports:
        kind, _, rest = report.partition(" ")
        values = rest.split()
        try:
            if kind == "page" and len(values) == 3:
                rendering.page_sizes.append((float(values[0]), float(values[1])))
                copies.append(int(float(values[2])))
            elif kind == "duplex" and values:
                # The last request wins, as it would on the device.
                rendering.duplex = values[0] == "true"
            elif kind == "copies" and values:
                copies.append(int(values[0]))
            elif kind == "pagesize" and len(values) == 2 and rendering.requested_page_size is None:
                rendering.requested_page_size = (float(values[0]), float(values[1]))
        except ValueError:
            continue
    requested = [c for c in copies if c > 1]
    if requested:
        rendering.copies = max(requested)
