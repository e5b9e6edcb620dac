"""PCL XL (PCL 6) spool files: walk the operator stream for pages, media and colour.

PCL XL is a binary stream of attribute values, attribute ids and operators (HP's "PCL XL
Feature Reference"). The walk reads every value and skips embedded data by its length, so it
never mistakes image bytes for operators:

* pages: one per ``BeginPage``; copies: ``EndPage``'s ``PageCopies`` (else PJL ``COPIES``);
* paper: ``BeginPage``'s ``MediaSize`` (enumeration or name) or ``CustomMediaSize``;
* duplex: ``BeginPage``'s ``DuplexPageMode`` (``SimplexPageMode`` is single-sided).

Colour comes from the colour space attributes and what is painted in them: in a grey colour
space (``eGray``, ``eBiLevel``) nothing is colour. In an RGB colour space a page is colour when
a path, shape or text is painted with a chromatic ``RGBColor`` brush or pen (same chroma
threshold as :mod:`._colour`), with a palette entry that is chromatic, or with a raster pattern
that is; and images are decoded (uncompressed, RLE, JPEG, delta row) and judged by the
page rule over all image pixels of the page. An image whose compression pcnet cannot decode is
charged as colour when drawn in a colour space. A PJL header asking for greyscale rendering
makes every page grey.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field

from PIL import Image

from . import _colour, _paper
from ._detect import PjlHeader
from ._result import PageLimitReached, SpoolAnalysis, failed, from_page_colours

# Attribute ids.
A_PALETTE_DEPTH, A_COLOR_SPACE, A_NULL_BRUSH, A_NULL_PEN, A_PALETTE_DATA = 2, 3, 4, 5, 6
A_PATTERN_SELECT, A_GRAY_LEVEL, A_RGB_COLOR, A_PRIMARY_ARRAY = 8, 9, 11, 14
A_MEDIA_SIZE, A_CUSTOM_MEDIA_SIZE, A_CUSTOM_MEDIA_UNITS, A_PAGE_COPIES = 37, 47, 48, 49
A_SIMPLEX_MODE, A_DUPLEX_MODE = 52, 53
A_COLOR_DEPTH, A_BLOCK_HEIGHT, A_COLOR_MAPPING, A_COMPRESS_MODE = 98, 99, 100, 101
A_PATTERN_DEFINE_ID, A_SOURCE_HEIGHT, A_SOURCE_WIDTH, A_PAD_BYTES = 105, 107, 108, 110

# Operators.
OP_BEGIN_PAGE, OP_END_PAGE = 0x43, 0x44
OP_POP_GS, OP_PUSH_GS, OP_SET_BRUSH, OP_SET_COLOR_SPACE, OP_SET_PEN = 0x60, 0x61, 0x63, 0x6A, 0x79
OP_BEGIN_IMAGE, OP_READ_IMAGE, OP_END_IMAGE = 0xB0, 0xB1, 0xB2
OP_BEGIN_PATTERN, OP_READ_PATTERN, OP_END_PATTERN = 0xB3, 0xB4, 0xB5
# Operators that put paint on the page with the current brush and/or pen.
PAINT_OPERATORS = {0x86, 0x96, 0x98, 0x9E, 0xA0, 0xA2, 0xA8, 0xB9}
TEXT_OPERATOR = 0xA8

# ColorSpace enumeration: eBiLevel 0, eGray 1, eRGB 2, eCMY 3, eCIELab 4, eCRGB 5, eSRGB 6.
GREY_SPACES = {0, 1}

# MediaSize enumeration (PCL XL 2.1), portrait points.
MEDIA_SIZES: dict[int, tuple[float, float]] = {
    0: (612.0, 792.0),  # Letter
    1: (612.0, 1008.0),  # Legal
    2: (595.28, 841.89),  # A4
    3: (522.0, 756.0),  # Executive
    4: (792.0, 1224.0),  # Ledger
    5: (841.89, 1190.55),  # A3
    6: (297.0, 684.0),  # COM-10 envelope
    7: (279.0, 540.0),  # Monarch envelope
    8: (459.21, 649.13),  # C5 envelope
    9: (311.81, 623.62),  # DL envelope
    10: (728.5, 1031.81),  # JIS B4
    11: (515.91, 728.5),  # JIS B5
    12: (498.9, 708.66),  # B5 envelope
    13: (498.9, 708.66),  # ISO B5
    16: (419.53, 595.28),  # A5
    17: (297.64, 419.53),  # A6
}
UNIT_POINTS = {0: 72.0, 1: 72.0 / 25.4, 2: 72.0 / 254.0}

_ELEMENT_SIZE = {0: 1, 1: 2, 2: 4, 3: 2, 4: 4, 5: 4}
_ELEMENT_FORMAT = {0: "B", 1: "H", 2: "I", 3: "h", 4: "i", 5: "f"}
_WHITESPACE = frozenset((0x00, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20))


class PclXlError(ValueError):
    """The stream is not well-formed PCL XL."""


@dataclass
class _Paint:
    """A brush or pen: whether what it paints is colour."""

    null: bool = False
    colour: bool = False


@dataclass
class _Graphics:
    colour_space: int = 1
    palette_colour: list[bool] = field(default_factory=list)
    brush: _Paint = field(default_factory=_Paint)
    pen: _Paint = field(default_factory=_Paint)

    def copy(self) -> _Graphics:
        return _Graphics(
            self.colour_space,
            list(self.palette_colour),
            _Paint(self.brush.null, self.brush.colour),
            _Paint(self.pen.null, self.pen.colour),
        )


@dataclass
class _Raster:
    """An image or raster pattern being read."""

    width: int
    height: int
    bits: int
    indexed: bool
    colour_space: int
    palette_colour: list[bool]
    pattern_id: int | None
    chromatic: int = 0
    pixels: int = 0
    undecodable: bool = False
    seed: bytes = b""


@dataclass
class _Page:
    colour: bool = False
    image_chromatic: int = 0
    image_pixels: int = 0
    copies: int = 1


class _PclXl:
    def __init__(self, data: bytes, position: int, pjl: PjlHeader, default_paper: str) -> None:
        self.data = data
        self.position = position
        self.pjl = pjl
        self.little_endian = True
        self.graphics = _Graphics()
        self.stack: list[_Graphics] = []
        self.patterns: dict[int, bool] = {}
        self.raster: _Raster | None = None
        self.pages: list[_Page] = []
        self.page: _Page | None = None
        self.paper: str | None = None
        self.default_paper = pjl.paper or default_paper
        self.duplex = bool(pjl.duplex)
        # (compression, rows, padding) of the ReadImage/ReadRastPattern whose data comes next.
        self.pending_block: tuple[int, int, int] | None = None
        self.max_pages: int | None = None

    # -- stream structure -----------------------------------------------------------------

    def run(self) -> None:
        self.read_stream_header()
        data = self.data
        end = len(data)
        attributes: dict[int, object] = {}
        value: object = None
        while self.position < end:
            tag = data[self.position]
            self.position += 1
            if tag in _WHITESPACE:
                continue
            if 0xC0 <= tag <= 0xEF:
                value = self.read_value(tag)
            elif tag == 0xF8:
                attributes[self.read_bytes(1)[0]] = value
            elif tag == 0xF9:
                attributes[self.unpack("H", 2)] = value
            elif tag == 0xFA:
                self.embedded(self.unpack("I", 4))
            elif tag == 0xFB:
                self.embedded(self.read_bytes(1)[0])
            elif 0x40 <= tag <= 0xBF:
                self.operator(tag, attributes)
                attributes = {}
            elif tag == 0x1B:
                # Universal Exit Language: the PCL XL stream is over.
                break
            else:
                raise PclXlError(f"unexpected byte 0x{tag:02x} at offset {self.position - 1}")
        if self.page is not None:
            self.finish_page()

    def read_stream_header(self) -> None:
        data = self.data
        start = self.position
        while start < len(data) and data[start] in _WHITESPACE:
            start += 1
        end = data.find(b"\n", start)
        if end < 0 or b"HP-PCL XL" not in data[start:end]:
            raise PclXlError("no PCL XL stream header")
        binding = data[start : start + 1]
        if binding == b"(":
            self.little_endian = False
        elif binding != b")":
            raise PclXlError("ASCII PCL XL streams are not supported")
        self.position = end + 1

    def read_bytes(self, count: int) -> bytes:
        start = self.position
        if start + count > len(self.data):
            raise PclXlError("the stream ends inside a value")
        self.position = start + count
        return self.data[start : start + count]

    def unpack(self, fmt: str, size: int) -> int:
        return struct.unpack(("<" if self.little_endian else ">") + fmt, self.read_bytes(size))[0]

    def read_value(self, tag: int) -> object:
        element = tag & 0x07
        if element not in _ELEMENT_SIZE:
            raise PclXlError(f"unknown data type 0x{tag:02x}")
        size, fmt = _ELEMENT_SIZE[element], _ELEMENT_FORMAT[element]
        shape = tag & 0xF8
        if shape == 0xC0:
            count = 1
        elif shape == 0xC8:
            length_tag = self.read_bytes(1)[0]
            if length_tag == 0xC0:
                count = self.read_bytes(1)[0]
            elif length_tag == 0xC1:
                count = self.unpack("H", 2)
            else:
                raise PclXlError("bad array length")
        elif shape == 0xD0:
            count = 2
        elif shape == 0xE0:
            count = 4
        else:
            raise PclXlError(f"unknown data type 0x{tag:02x}")
        raw = self.read_bytes(size * count)
        values = struct.unpack(("<" if self.little_endian else ">") + fmt * count, raw)
        if shape == 0xC0:
            return values[0]
        if shape == 0xC8 and element == 0:
            return raw  # ubyte arrays: names, palettes, colours
        return values

    def embedded(self, length: int) -> None:
        if self.position + length > len(self.data):
            raise PclXlError("the stream ends inside embedded data")
        block = self.data[self.position : self.position + length]
        self.position += length
        if self.raster is not None and self.pending_block is not None:
            self.read_raster_block(block, *self.pending_block)
        self.pending_block = None

    # -- operators --------------------------------------------------------------------------

    def operator(self, op: int, attributes: dict[int, object]) -> None:
        if op == OP_BEGIN_PAGE:
            self.begin_page(attributes)
        elif op == OP_END_PAGE:
            self.end_page(attributes)
        elif op == OP_SET_COLOR_SPACE:
            self.set_colour_space(attributes)
        elif op == OP_SET_BRUSH:
            self.graphics.brush = self.paint_source(attributes, A_NULL_BRUSH)
        elif op == OP_SET_PEN:
            self.graphics.pen = self.paint_source(attributes, A_NULL_PEN)
        elif op == OP_PUSH_GS:
            self.stack.append(self.graphics.copy())
        elif op == OP_POP_GS:
            if self.stack:
                self.graphics = self.stack.pop()
        elif op in PAINT_OPERATORS:
            self.paint(text=op == TEXT_OPERATOR)
        elif op in (OP_BEGIN_IMAGE, OP_BEGIN_PATTERN):
            self.begin_raster(attributes, pattern=op == OP_BEGIN_PATTERN)
        elif op in (OP_READ_IMAGE, OP_READ_PATTERN):
            self.pending_block = (
                _int(attributes.get(A_COMPRESS_MODE), 0),
                _int(attributes.get(A_BLOCK_HEIGHT), 0),
                _int(attributes.get(A_PAD_BYTES), 4) or 4,
            )
        elif op in (OP_END_IMAGE, OP_END_PATTERN):
            self.end_raster()

    def begin_page(self, attributes: dict[int, object]) -> None:
        if self.page is not None:
            self.finish_page()
        self.page = _Page(copies=self.pjl.copies or 1)
        if self.paper is None:
            self.paper = self.media_name(attributes)
        if A_DUPLEX_MODE in attributes:
            self.duplex = True
        self.graphics = _Graphics()
        self.stack = []

    def end_page(self, attributes: dict[int, object]) -> None:
        if self.page is None:
            return
        copies = _int(attributes.get(A_PAGE_COPIES), 0)
        if copies >= 1:
            self.page.copies = copies
        self.finish_page()

    def finish_page(self) -> None:
        page = self.page
        if page is None:
            return
        if _colour.is_colour(page.image_chromatic, page.image_pixels):
            page.colour = True
        if self.pjl.grey:
            page.colour = False
        self.pages.append(page)
        self.page = None
        if self.max_pages is not None and len(self.pages) > self.max_pages:
            raise PageLimitReached

    def media_name(self, attributes: dict[int, object]) -> str | None:
        media = attributes.get(A_MEDIA_SIZE)
        if isinstance(media, int) and media in MEDIA_SIZES:
            return _paper.paper_name(*MEDIA_SIZES[media])
        if isinstance(media, (bytes, bytearray)):
            return _paper.name_from_keyword(bytes(media).decode("latin-1").strip("\x00"))
        custom = attributes.get(A_CUSTOM_MEDIA_SIZE)
        if isinstance(custom, tuple) and len(custom) == 2:
            scale = UNIT_POINTS.get(_int(attributes.get(A_CUSTOM_MEDIA_UNITS), 0), 72.0)
            return _paper.paper_name(custom[0] * scale, custom[1] * scale)
        return None

    def set_colour_space(self, attributes: dict[int, object]) -> None:
        space = _int(attributes.get(A_COLOR_SPACE), self.graphics.colour_space)
        self.graphics.colour_space = space
        palette = attributes.get(A_PALETTE_DATA)
        self.graphics.palette_colour = []
        if isinstance(palette, (bytes, bytearray)) and space not in GREY_SPACES:
            # RGB palettes hold three bytes per entry.
            self.graphics.palette_colour = [
                _colour.is_colour_rgb(*palette[i : i + 3]) for i in range(0, len(palette) - 2, 3)
            ]

    def paint_source(self, attributes: dict[int, object], null_attribute: int) -> _Paint:
        graphics = self.graphics
        if null_attribute in attributes:
            return _Paint(null=True)
        if graphics.colour_space in GREY_SPACES:
            return _Paint()
        colour = attributes.get(A_RGB_COLOR, attributes.get(A_PRIMARY_ARRAY))
        if colour is not None:
            return _Paint(colour=_chromatic(colour))
        if A_PATTERN_SELECT in attributes:
            return _Paint(colour=self.patterns.get(_int(attributes[A_PATTERN_SELECT], -1), False))
        if A_GRAY_LEVEL in attributes and graphics.palette_colour:
            # With a palette, the value is an index into it.
            index = _int(attributes[A_GRAY_LEVEL], 0)
            return _Paint(
                colour=0 <= index < len(graphics.palette_colour) and graphics.palette_colour[index]
            )
        return _Paint()

    def paint(self, *, text: bool) -> None:
        if self.page is None:
            return
        graphics = self.graphics
        if graphics.colour_space in GREY_SPACES:
            return
        brush = not graphics.brush.null and graphics.brush.colour
        pen = not text and not graphics.pen.null and graphics.pen.colour
        if brush or pen:
            self.page.colour = True

    # -- images and raster patterns ---------------------------------------------------------

    def begin_raster(self, attributes: dict[int, object], *, pattern: bool) -> None:
        depth = {0: 1, 1: 4, 2: 8}.get(_int(attributes.get(A_COLOR_DEPTH), 2), 8)
        self.raster = _Raster(
            width=_int(attributes.get(A_SOURCE_WIDTH), 0),
            height=_int(attributes.get(A_SOURCE_HEIGHT), 0),
            bits=depth,
            indexed=_int(attributes.get(A_COLOR_MAPPING), 0) == 1,
            colour_space=self.graphics.colour_space,
            palette_colour=list(self.graphics.palette_colour),
            pattern_id=_int(attributes.get(A_PATTERN_DEFINE_ID), 0) if pattern else None,
        )

    def read_raster_block(self, block: bytes, compression: int, rows: int, pad: int) -> None:
        raster = self.raster
        if raster is None or raster.colour_space in GREY_SPACES or raster.undecodable:
            return
        if raster.indexed and not any(raster.palette_colour):
            return  # every index maps to a neutral colour
        if self.page is not None and self.page.colour and raster.pattern_id is None:
            return  # the page is already colour: no need to look
        image = _decode_block(block, compression, rows, pad, raster, self.little_endian)
        if image is None:
            raster.undecodable = True
            return
        raster.chromatic += _colour.chromatic_pixels(image)
        raster.pixels += image.width * image.height

    def end_raster(self) -> None:
        raster, self.raster = self.raster, None
        if raster is None or raster.colour_space in GREY_SPACES:
            if raster is not None and raster.pattern_id is not None:
                self.patterns[raster.pattern_id] = False
            return
        if raster.pattern_id is not None:
            self.patterns[raster.pattern_id] = raster.undecodable or _colour.is_colour(
                raster.chromatic, raster.pixels
            )
            return
        if self.page is None:
            return
        if raster.undecodable:
            self.page.colour = True
        self.page.image_chromatic += raster.chromatic
        self.page.image_pixels += raster.pixels


def _decode_block(
    block: bytes, compression: int, rows: int, pad: int, raster: _Raster, little_endian: bool
) -> Image.Image | None:
    """Decode one ReadImage block to an RGB image, or None when pcnet cannot."""
    width, bits = raster.width, raster.bits
    if width <= 0 or rows <= 0:
        return None
    samples = 1 if raster.indexed else 3
    row_bytes = (width * bits * samples + 7) // 8
    padded = (row_bytes + pad - 1) // pad * pad
    try:
        if compression == 2:  # JPEG
            return Image.open(io.BytesIO(block)).convert("RGB")
        if compression == 0:
            raw = block
        elif compression == 1:  # RLE: TIFF PackBits over the padded rows
            raw = Image.frombytes("L", (padded, rows), block, "packbits", "L").tobytes()
        elif compression == 3:  # delta row, unpadded rows
            raw, raster.seed = _delta_rows(block, rows, row_bytes, raster.seed, little_endian)
            padded = row_bytes
        else:
            return None
    except (ValueError, OSError, IndexError, struct.error):
        return None
    if len(raw) < padded * rows:
        return None
    rows_data = b"".join(raw[r * padded : r * padded + row_bytes] for r in range(rows))
    if not raster.indexed and bits == 8:
        return Image.frombytes("RGB", (width, rows), rows_data)
    if raster.indexed and bits in (1, 4, 8):
        indices = Image.frombytes(
            "P", (width, rows), rows_data, "raw", {1: "P;1", 4: "P;4", 8: "P"}[bits]
        )
        palette = raster.palette_colour
        # Chromatic entries become red and neutral ones white: enough to count the pixels.
        lut: list[int] = []
        for index in range(256):
            lut += [255, 0, 0] if index < len(palette) and palette[index] else [255, 255, 255]
        indices.putpalette(lut)
        return indices.convert("RGB")
    return None


def _delta_rows(
    block: bytes, rows: int, row_bytes: int, seed: bytes, little_endian: bool
) -> tuple[bytes, bytes]:
    """Decode PCL XL delta row compression (a 2-byte row length, then PCL mode 3 deltas)."""
    output = bytearray()
    row = bytearray(seed.ljust(row_bytes, b"\x00")[:row_bytes])
    position = 0
    for _ in range(rows):
        if position + 2 > len(block):
            raise ValueError("delta row data ends early")
        low, high = (0, 1) if little_endian else (1, 0)
        length = block[position + low] | (block[position + high] << 8)
        position += 2
        end = position + length
        column = 0
        while position < end:
            command = block[position]
            position += 1
            count = (command >> 5) + 1
            offset = command & 0x1F
            if offset == 31:
                while True:
                    extra = block[position]
                    position += 1
                    offset += extra
                    if extra != 255:
                        break
            column += offset
            row[column : column + count] = block[position : position + count]
            position += count
            column += count
        del row[row_bytes:]
        output += row
    return bytes(output), bytes(row)


def _chromatic(colour: object) -> bool:
    if isinstance(colour, (bytes, bytearray)):
        values = list(colour)
        scale = 255.0
    elif isinstance(colour, tuple):
        values = list(colour)
        scale = 1.0 if any(isinstance(v, float) for v in values) else 255.0
    else:
        return False
    if len(values) < 3:
        return False
    return _colour.is_colour_rgb(*values[:3], scale=scale)


def _int(value: object, default: int) -> int:
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, (bytes, bytearray)) and len(value) == 1:
        return value[0]
    return default


def analyse_pclxl(
    data: bytes, *, pjl: PjlHeader, default_paper: str, max_pages: int | None = None
) -> SpoolAnalysis:
    """Analyse a PCL XL job; reading stops once it has shown more than *max_pages* pages."""
    walker = _PclXl(data, pjl.body_offset, pjl, default_paper)
    walker.max_pages = max_pages
    error = None
    try:
        walker.run()
    except PageLimitReached:
        pass  # the result has max_pages + 1 pages; pcnet.spool.analyse flags it
    except PclXlError as problem:
        error = f"malformed PCL XL: {problem}"
        if walker.page is not None:
            # The page being drawn when the stream broke: charge it, as colour.
            walker.page.colour = not pjl.grey
            walker.finish_page()
    pages = walker.pages
    paper = walker.paper or walker.default_paper
    if not pages:
        return failed("pclxl", error or "the PCL XL job prints no page", paper_size=paper)
    return from_page_colours(
        "pclxl",
        [page.colour for page in pages],
        duplex=walker.duplex,
        copies=max(page.copies for page in pages),
        paper_size=paper,
        error=error,
    )
