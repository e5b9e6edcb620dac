"""PWG raster (and CUPS raster) spool files, plain or gzip-compressed.

A PWG raster stream (PWG 5102.4) is a sync word (``RaS2``) and, per page, a 1796-byte header
followed by the page's pixels, compressed with a PackBits-like run-length code: each line
starts with a repeat count byte (the line is used 1 to 256 times), then runs: a byte ``n`` of
0-127 repeats the next pixel ``n + 1`` times, 129-255 copies ``257 - n`` literal pixels, and 128
(CUPS) fills the rest of the line with white. Pages carry no length, so the only way to the next
page is to decode every line of this one. CUPS raster versions 1 and 3 (``RaSt``, ``RaS3``,
uncompressed) and little-endian writers (``2SaR``...) are read as well.

From the first page header: ``PageSize`` (points) gives the paper, ``Duplex`` and
``NumCopies`` the requests. Colour, per page: a one-colour space (black, white, sGray, Device1)
is grey; for RGB, sRGB, AdobeRGB, CMY and CMYK at 8 or 16 bits per colour every pixel is judged
by the rule of :mod:`._colour` (neutral lines, the bulk of most pages, are recognised with two
byte-slice comparisons; the rest go through Pillow in batches; a page stops being examined once
it is known to be colour). Other colour spaces and bit depths that can hold colour are charged
as colour without looking.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import IO

from PIL import Image

from . import _colour, _paper
from ._result import SpoolAnalysis, failed, from_page_colours

HEADER_V2 = 1796
HEADER_V1 = 420
_READ_SIZE = 1 << 20

SYNC_WORDS = {
    b"RaS2": (">", True, HEADER_V2),
    b"2SaR": ("<", True, HEADER_V2),
    b"RaS3": (">", False, HEADER_V2),
    b"3SaR": ("<", False, HEADER_V2),
    b"RaSt": (">", False, HEADER_V1),
    b"tSaR": ("<", False, HEADER_V1),
}

# cupsColorSpace values.
GREY_SPACES = {0, 3, 12, 13, 14, 18, 48}  # W, K, WHITE, GOLD, SILVER, sGray, Device1
WHITE_FILL_SPACES = {0, 1, 17, 18, 19, 20}  # where a 128 run means white = 0xff
RGB_SPACES = {1, 19, 20}  # RGB, sRGB, AdobeRGB
CMY_SPACES = {4}
CMYK_SPACES = {6}

_INVERT = bytes(range(255, -1, -1))  # CMY to RGB


class PwgError(ValueError):
    """The raster stream is malformed or truncated."""


@dataclass(frozen=True)
class PageHeader:
    duplex: bool
    resolution: tuple[int, int]
    copies: int
    page_size: tuple[int, int]
    width: int
    height: int
    bits_per_colour: int
    bits_per_pixel: int
    bytes_per_line: int
    colour_order: int
    colour_space: int
    colours: int

    @classmethod
    def parse(cls, raw: bytes, order: str) -> PageHeader:
        def uint(offset: int) -> int:
            return struct.unpack_from(order + "I", raw, offset)[0]

        colour_space = uint(400)
        colours = uint(420) if len(raw) >= 424 else 0
        if colours == 0:
            colours = 1 if colour_space in GREY_SPACES else 4 if colour_space in CMYK_SPACES else 3
        header = cls(
            duplex=uint(272) != 0,
            resolution=(uint(276), uint(280)),
            copies=uint(340),
            page_size=(uint(352), uint(356)),
            width=uint(372),
            height=uint(376),
            bits_per_colour=uint(384),
            bits_per_pixel=uint(388),
            bytes_per_line=uint(392),
            colour_order=uint(396),
            colour_space=colour_space,
            colours=colours,
        )
        if not (0 < header.bits_per_pixel <= 240 and 0 < header.bits_per_colour <= 16):
            raise PwgError("page header has impossible bit depths")
        if header.bytes_per_line == 0 or header.height == 0:
            raise PwgError("page header describes an empty page")
        if header.bytes_per_line % header.unit != 0:
            raise PwgError("line length is not a whole number of pixels")
        return header

    @property
    def unit(self) -> int:
        """Bytes per run-length unit: a pixel (chunky) or a colour (banded, planar)."""
        bits = self.bits_per_pixel if self.colour_order == 0 else self.bits_per_colour
        return max(1, (bits + 7) // 8)

    @property
    def lines(self) -> int:
        return self.height * (self.colours if self.colour_order == 2 else 1)

    @property
    def judged_by_pixels(self) -> bool:
        """Whether this page's pixels can be judged (else its colour space decides)."""
        return (
            self.colour_order == 0
            and self.bits_per_colour in (8, 16)
            and (
                (self.colour_space in RGB_SPACES | CMY_SPACES and self.colours == 3)
                or (self.colour_space in CMYK_SPACES and self.colours == 4)
            )
        )


class _Reader:
    """Buffered reads from a (possibly gzip) stream, indexable without a call per byte."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.buffer = b""
        self.position = 0

    def ensure(self, count: int) -> bool:
        """Make *count* bytes available from ``position``; False at the end of the stream."""
        if self.position + count <= len(self.buffer):
            return True
        rest = self.buffer[self.position :]
        chunks = [rest]
        have = len(rest)
        while have < count:
            block = self.stream.read(max(_READ_SIZE, count - have))
            if not block:
                break
            chunks.append(block)
            have += len(block)
        self.buffer = b"".join(chunks)
        self.position = 0
        return have >= count

    def read(self, count: int) -> bytes:
        if not self.ensure(count):
            raise PwgError("the raster stream ends inside a page")
        start = self.position
        self.position += count
        return self.buffer[start : start + count]

    def skip(self, count: int) -> None:
        """Step over *count* bytes without holding them all in memory."""
        while count > 0:
            step = min(count, _READ_SIZE)
            self.read(step)
            count -= step

    def at_end(self) -> bool:
        return not self.ensure(1)


def analyse_pwg(stream: IO[bytes], *, max_pages: int | None = None) -> SpoolAnalysis:
    """Analyse a PWG/CUPS raster stream; reading stops after more than *max_pages* pages."""
    reader = _Reader(stream)
    sync = reader.read(4) if reader.ensure(4) else b""
    if sync not in SYNC_WORDS:
        return failed("pwg-raster", "not a PWG/CUPS raster stream")
    order, compressed, header_size = SYNC_WORDS[sync]

    colours: list[bool] = []
    first: PageHeader | None = None
    error = None
    try:
        while not reader.at_end() and (max_pages is None or len(colours) <= max_pages):
            header = PageHeader.parse(reader.read(header_size), order)
            first = first or header
            colours.append(_read_page(reader, header, compressed, order))
    except PwgError as problem:
        error = f"malformed raster: {problem}"
        if first is not None:
            colours.append(True)  # the broken page is charged as colour
    except (OSError, EOFError) as problem:  # gzip errors
        error = f"cannot read the raster stream: {problem}"
        if first is not None:
            colours.append(True)
    if first is None:
        return failed("pwg-raster", error or "the raster stream has no pages")
    return from_page_colours(
        "pwg-raster",
        colours,
        duplex=first.duplex,
        copies=first.copies or 1,
        paper_size=_paper.paper_name(*first.page_size) if all(first.page_size) else "unknown",
        error=error,
    )


def _read_page(reader: _Reader, header: PageHeader, compressed: bool, order: str) -> bool:
    """Walk one page's pixels; returns whether it is a colour page."""
    if header.colour_space in GREY_SPACES or header.colours == 1:
        judge = None
    elif header.judged_by_pixels:
        judge = _PixelJudge(header, order)
    else:
        _skip_page(reader, header, compressed)
        return True  # a colour-capable space pcnet cannot judge: charged as colour
    if not compressed:
        if judge is None:
            reader.skip(header.bytes_per_line * header.lines)
            return False
        for _ in range(header.lines):
            data = reader.read(header.bytes_per_line)
            if judge.wants():
                judge.line(data, 1)
        return judge.is_colour()

    line = 0
    white = 0xFF if header.colour_space in WHITE_FILL_SPACES else 0x00
    while line < header.lines:
        repeat = reader.read(1)[0] + 1
        data = _decode_line(reader, header, white, keep=judge is not None and judge.wants())
        if judge is not None and data is not None:
            judge.line(data, repeat)
        line += repeat
    return judge.is_colour() if judge is not None else False


def _skip_page(reader: _Reader, header: PageHeader, compressed: bool) -> None:
    if not compressed:
        reader.skip(header.bytes_per_line * header.lines)
        return
    line = 0
    while line < header.lines:
        line += reader.read(1)[0] + 1
        _decode_line(reader, header, 0, keep=False)


def _decode_line(reader: _Reader, header: PageHeader, white: int, *, keep: bool) -> bytes | None:
    """Decode (or, when *keep* is false, only step over) one compressed line."""
    unit = header.unit
    remaining = header.bytes_per_line
    # A run never takes more than twice the bytes it produces (a one-byte pixel repeated once
    # costs two), so one refill per line is enough and the loop can index the buffer directly.
    reader.ensure(2 * remaining + 1)
    buffer = reader.buffer
    position = reader.position
    end = len(buffer)
    parts: list[bytes] = []
    while remaining > 0:
        if position >= end:
            raise PwgError("the raster stream ends inside a line")
        control = buffer[position]
        position += 1
        if control == 128:
            if keep:
                parts.append(bytes([white]) * remaining)
            break
        if control > 128:
            size = (257 - control) * unit
            if size > remaining:
                size = remaining
            if keep:
                parts.append(buffer[position : position + size])
            position += size
        else:
            size = (control + 1) * unit
            if size > remaining:
                size = remaining
            if keep:
                parts.append(buffer[position : position + unit] * (size // unit))
            position += unit
        remaining -= size
    if position > end:
        raise PwgError("the raster stream ends inside a line")
    reader.position = position
    return b"".join(parts) if keep else None


class _PixelJudge:
    """Count the chromatic pixels of one page, line by line, until the page is decided."""

    def __init__(self, header: PageHeader, order: str) -> None:
        self.header = header
        self.order = order
        self.total = header.width * header.height
        self.chromatic = 0
        self.decided = False
        self.pending: list[bytes] = []  # consecutive non-neutral lines, judged as one image
        self.pending_bytes = 0

    def wants(self) -> bool:
        return not self.decided

    def line(self, data: bytes, repeat: int) -> None:
        rgb = self.to_rgb(data)
        if rgb is None or rgb[0::3] == rgb[1::3] == rgb[2::3]:
            return  # a neutral line (the common case): nothing to count
        if repeat > 1:
            self.count([rgb], repeat)
            return
        self.pending.append(rgb)
        self.pending_bytes += len(rgb)
        if self.pending_bytes >= _READ_SIZE:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.count(self.pending, 1)
            self.pending = []
            self.pending_bytes = 0

    def count(self, lines: list[bytes], weight: int) -> None:
        image = Image.frombytes("RGB", (self.header.width, len(lines)), b"".join(lines))
        self.chromatic += _colour.chromatic_pixels(image) * weight
        if _colour.is_colour(self.chromatic, self.total):
            self.decided = True  # no need to look at the rest of the page

    def to_rgb(self, data: bytes) -> bytes | None:
        """The line as 8-bit RGB, or None when it is plainly neutral."""
        header = self.header
        if header.bits_per_colour == 16:
            # Keep the most significant byte of each 16-bit sample.
            data = data[0::2] if self.order == ">" else data[1::2]
        pixels = header.width
        if header.colour_space in CMYK_SPACES:
            cmyk = data[: pixels * 4]
            if cmyk[0::4] == cmyk[1::4] == cmyk[2::4]:
                return None  # equal cyan, magenta and yellow: neutral
            return Image.frombytes("CMYK", (pixels, 1), cmyk).convert("RGB").tobytes()
        if header.colour_space in CMY_SPACES:
            return data[: pixels * 3].translate(_INVERT)
        return data[: pixels * 3]

    def is_colour(self) -> bool:
        self.flush()
        return _colour.is_colour(self.chromatic, self.total)
