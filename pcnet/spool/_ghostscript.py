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
output cannot pass for them; stderr is drained and the reports applied as they come, keeping
only their summary and the last messages, so an endless stream of messages costs no memory.

Ghostscript runs in the job's :class:`._sandbox.Sandbox` (bubblewrap, or an unprivileged user),
with ``-dSAFER``, the input as its only ``--permit-file-read`` path, band lists kept in memory
(no temporary files needed), and the sandbox's limits on time, CPU, memory and temporary space.
Page output stops deterministically: once more than ``max_pages`` pages have come out,
Ghostscript is killed and :attr:`Rendering.limit` is ``pages``. A crash or a PostScript error is
reported in :attr:`Rendering.error` with the pages rendered before it (the same file fails the
same way on any machine); a run stopped by a machine limit (time, CPU, memory, temporary space)
also sets :attr:`Rendering.limit`, and its pages must not be trusted as a count: how far it got
depends on the machine.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import shutil
import signal
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import IO

from PIL import Image

from . import _colour
from ._result import over_page_limit
from ._sandbox import MACHINE_LIMITS, Sandbox, SandboxUnavailable

# Pixels decoded per read when judging a page: bounds memory for absurd page sizes.
_CHUNK_BYTES = 4 * 1024 * 1024
# What is kept of Ghostscript's stderr: a summary of the reports and the last messages.
_MAX_PAGE_SIZES = 100_000
_TAIL_LINES = 50
_VMERROR = re.compile(r"VMerror|interpreter error -25\b|out of memory", re.IGNORECASE)
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
    limit: str | None = None  # the limit that stopped Ghostscript: pages, time, cpu, memory, output


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


def render(path: str, *, pdf: bool, sandbox: Sandbox, max_pages: int | None = None) -> Rendering:
    """Render every page of *path* in *sandbox* and judge its colour; never raises for a bad
    document. At most *max_pages* + 1 pages are read (default: the sandbox's ``max_pages``)."""
    if max_pages is None:
        max_pages = sandbox.limits.max_pages
    token = "PCNET-" + secrets.token_hex(8)
    executable = ghostscript()
    document = sandbox.expose(os.fspath(path))
    command = [
        executable,
        "-q",
        "-dSAFER",
        f"--permit-file-read={document}",
        "-dBATCH",
        "-dNOPAUSE",
        "-dNOINTERPOLATE",
        "-dTextAlphaBits=4",
        "-dGraphicsAlphaBits=4",
        "-sBandListStorage=memory",
        "-sstdout=%stderr",
        "-sDEVICE=ppmraw",
        f"-r{_colour.RENDER_DPI}",
        "-sOutputFile=-",
    ]
    if pdf:
        # Honour the annotations' print flags, as a printed PDF would.
        command.append("-dPrinted")
    # An absolute path can never be taken for a command-line switch.
    command += ["-c", _prologue(token), "-f", document]

    rendering = Rendering()
    try:
        process = sandbox.start(command)
    except OSError as error:  # prlimit, bwrap or setpriv gone since start-up
        raise SandboxUnavailable(f"cannot start Ghostscript in the sandbox: {error}") from None
    messages = _Messages(process.stderr, token, rendering)
    messages.start()
    read_error = None
    complete = False
    try:
        read_error = _read_pages(process.stdout, rendering, max_pages)
        if len(rendering.page_colours) > max_pages:
            process.kill("pages")
        complete = read_error is None
    finally:
        if not complete:
            process.kill()  # nothing more will be read: do not let it run to its timeout
        process.stdout.close()
        outcome = process.wait()
        messages.join()
        process.stderr.close()

    messages.finish()
    limits = sandbox.limits
    rendering.limit = outcome.limit
    if rendering.limit is None and outcome.returncode != 0 and messages.out_of_memory():
        rendering.limit = "memory"
    rendered = len(rendering.page_colours)
    if rendering.limit == "pages":
        rendering.error = f"Ghostscript output more than {max_pages} pages"
    elif rendering.limit == "time":
        rendering.error = f"Ghostscript stopped at the time limit ({limits.timeout:g} s)"
    elif rendering.limit == "cpu":
        rendering.error = f"Ghostscript stopped at the CPU time limit ({limits.cpu_seconds} s)"
    elif rendering.limit == "memory":
        rendering.error = f"Ghostscript ran out of memory (limit {limits.memory_mb} MB)"
    elif rendering.limit == "output":
        rendering.error = (
            f"Ghostscript wrote more than the temporary space limit ({limits.temp_mb} MB)"
        )
    elif outcome.returncode != 0 and not (read_error and outcome.returncode == -signal.SIGKILL):
        rendering.error = (
            f"Ghostscript failed (exit status {outcome.returncode}): {messages.last_error()}"
        )
    elif read_error:
        rendering.error = read_error  # and Ghostscript was killed for it
    if rendering.limit is not None and rendering.limit != "pages":
        rendering.error += f" after {rendered} pages"
    return rendering


class _Messages(threading.Thread):
    """Drain Ghostscript's stderr: apply the prologue's reports, keep the last other lines.

    A job can print without end (its output goes to stderr too); reading it as it comes,
    keeping bounded amounts, means such a job costs CPU until a limit stops it, never disk or
    memory.
    """

    def __init__(self, stream: IO[bytes], token: str, rendering: Rendering) -> None:
        super().__init__(name="pcnet-gs-stderr", daemon=True)
        self.stream = stream
        self.prefix = (token + " ").encode()
        self.rendering = rendering
        self.copies = 1
        self.vmerror = False
        self.tail: deque[str] = deque(maxlen=_TAIL_LINES)

    def run(self) -> None:
        for line in iter(lambda: self.stream.readline(_MAX_LINE), b""):
            if line.startswith(self.prefix):
                self._report(line[len(self.prefix) :].decode("latin-1").strip())
            elif line.strip():
                text = line.decode("latin-1").strip()
                # Ghostscript's out-of-memory error, by name or by its code (-25), may be
                # followed by pages of stack dump: remember it rather than look in the tail.
                if _VMERROR.search(text):
                    self.vmerror = True
                self.tail.append(text)

    def _report(self, report: str) -> None:
        """Apply one page-device report (``kind value...``)."""
        rendering = self.rendering
        kind, _, rest = report.partition(" ")
        values = rest.split()
        try:
            if kind == "page" and len(values) == 3:
                if len(rendering.page_sizes) < _MAX_PAGE_SIZES:
                    rendering.page_sizes.append((float(values[0]), float(values[1])))
                self._copies(values[2])
            elif kind == "duplex" and values:
                # The last request wins, as it would on the device.
                rendering.duplex = values[0] == "true"
            elif kind == "copies" and values:
                self._copies(values[0])
            elif kind == "pagesize" and len(values) == 2 and rendering.requested_page_size is None:
                rendering.requested_page_size = (float(values[0]), float(values[1]))
        except (ValueError, OverflowError):
            return

    def _copies(self, text: str) -> None:
        value = float(text)
        if math.isnan(value):
            return
        # An infinite request is as absurd as a huge one: the result's bound applies to both.
        copies = int(value) if math.isfinite(value) else 2**63
        self.copies = max(self.copies, copies)

    def finish(self) -> None:
        if self.copies > 1:
            self.rendering.copies = self.copies

    def out_of_memory(self) -> bool:
        return self.vmerror

    def last_error(self) -> str:
        """The most useful line of Ghostscript's error output, for the administrator."""
        for line in self.tail:
            if "Error" in line:
                return line[:200]
        return self.tail[-1][:200] if self.tail else "no message"


def _read_pages(stream: IO[bytes], rendering: Rendering, max_pages: int) -> str | None:
    """Judge each PPM page on *stream*, stopping after *max_pages* + 1 pages (the extra page is
    not read, only counted); returns a message if the stream is malformed."""
    while len(rendering.page_colours) <= max_pages:
        header = _read_ppm_header(stream)
        if header is None:
            return None
        if isinstance(header, str):
            return header
        width, height = header
        if len(rendering.page_colours) == max_pages:
            rendering.page_colours.append(True)  # past the maximum: counted, not judged
            return None
        rendering.page_colours.append(_judge_page(stream, width, height))
    return None


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


def merge_rendering(
    pages: int, rendering: Rendering
) -> tuple[list[bool], str | None, tuple[str, ...]]:
    """Colour flags for a document of *pages* pages (known from its structure), the error to
    report and the limits hit.

    * a run stopped by a machine limit (time, CPU, memory, temporary space): **every page
      colour**, since how far it got depends on the machine;
    * more pages rendered than the maximum: the maximum + 1 (the server's page limit denies it);
    * otherwise (including a crash or an error, which any machine reproduces): rendered pages
      keep their verdict, the others count as colour.
    """
    rendered = rendering.page_colours
    error = rendering.error
    if rendering.limit in MACHINE_LIMITS:
        return [True] * pages, f"{error}; every page counted as colour", (rendering.limit,)
    if rendering.limit == "pages":
        return over_page_limit(len(rendered) - 1, rendered), error, ("pages",)
    if len(rendered) != pages and error is None:
        error = f"the PDF has {pages} pages but Ghostscript rendered {len(rendered)}"
    total = max(pages, len(rendered))
    colours = list(rendered[:total]) + [True] * (total - len(rendered))
    return colours, error, ()
