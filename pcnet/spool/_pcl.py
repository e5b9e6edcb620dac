"""PCL 5 spool files: a small interpreter of the commands that decide pages, paper and colour.

Ghostscript in Debian has no PCL interpreter, so pcnet follows the page logic of HP's PCL 5
reference (and of GhostPCL, which implements it) for the commands that matter to a charge:

* a page is printed by a form feed (FF, always, even a blank page), by a line feed that moves
  past the bottom of the text area while perforation skip is on (always), by ``ESC&a#G``
  (duplex side select, always), and, only if something was drawn on it, by ``ESC E`` (reset),
  a page size, orientation, paper source or duplex mode change, or the end of the job;
* the text area follows the defaults (half-inch top margin, text length = page length less
  one inch, 6 lines per inch, i.e. 60 lines on Letter and 64 on A4) and the commands that change
  them (``ESC&l#E`` top margin, ``#F`` text length, ``#D`` lines per inch, ``#C`` VMI, ``#L``
  perforation skip, ``ESC&k#G`` line termination) and the vertical cursor moves;
* paper: ``ESC&l#A`` (page size code), else the PJL ``PAPER``, else *default_paper*;
  duplex: ``ESC&l#S`` (1 long edge, 2 short edge); copies: ``ESC&l#X``, else PJL ``COPIES``;
* binary data (raster rows, fonts, patterns, transparent data) is skipped by its byte count,
  so a form-feed byte inside a font is never taken for a page.

Colour: PCL 5 prints black on the default black-and-white palette, so a page is grey unless
colour commands appear: a page counts as colour when something is drawn on it in a
foreground colour that is chromatic (simple colour ``ESC*r3U`` / ``ESC*r-3U`` palettes, or a
``ESC*v#W`` configured palette with entries set by ``ESC*v#A/B/C/I``, selected with
``ESC*v#S``), or when raster graphics or HP-GL/2 pen colours are sent while a palette with
chromatic entries is active (raster data is not decoded: under a colour palette it is charged as
colour). A PJL header asking for greyscale rendering makes every page grey.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import _colour, _paper
from ._detect import UEL, PjlHeader, read_pjl
from ._result import PageLimitReached, SpoolAnalysis, failed, from_page_colours

CP_PER_INCH = 7200  # PCL "centipoints": the internal unit, as in GhostPCL
CP_PER_POINT = 100
DEFAULT_VMI = 1200  # 6 lines per inch

# ESC&l#A page size codes, portrait points.
PAGE_SIZES: dict[int, tuple[float, float]] = {
    1: (522.0, 756.0),  # Executive
    2: (612.0, 792.0),  # Letter
    3: (612.0, 1008.0),  # Legal
    6: (792.0, 1224.0),  # Ledger / Tabloid
    25: (419.53, 595.28),  # A5
    26: (595.28, 841.89),  # A4
    27: (841.89, 1190.55),  # A3
    45: (515.91, 728.5),  # JIS B5
    46: (728.5, 1031.81),  # JIS B4
    80: (279.0, 540.0),  # Monarch envelope
    81: (297.0, 684.0),  # COM-10 envelope
    90: (311.81, 623.62),  # DL envelope
    91: (459.21, 649.13),  # C5 envelope
    100: (498.9, 708.66),  # B5 envelope
}

_WHITE = (255, 255, 255)
_BLACK = (0, 0, 0)
_RGB_ORDER = [
    (0, 0, 0), (255, 0, 0), (0, 255, 0), (255, 255, 0),
    (0, 0, 255), (255, 0, 255), (0, 255, 255), (255, 255, 255),
]  # fmt: skip
_CMY_ORDER = [
    (255, 255, 255), (0, 255, 255), (255, 0, 255), (0, 0, 255),
    (255, 255, 0), (0, 255, 0), (255, 0, 0), (0, 0, 0),
]  # fmt: skip

# Bytes that put nothing on the page: controls handled elsewhere and the space.
_BLANK = bytes(range(0, 33)) + b"\x7f"
_TEXT_TOKENS = re.compile(rb"[\n\r\f]|[^\n\r\f]+")
_HPGL_MARKS = re.compile(rb"(?:PD|PE|PR|PA|LB|RA|RR|EA|ER|EP|FP|CI|AA|AR|WG|EW|PM|BR|BZ|PO)")
_HPGL_PEN_COLOUR = re.compile(rb"(?:SP\s*[2-9]|PC)")
_PARAM = re.compile(rb"([+-]?[0-9]*(?:\.[0-9]*)?)([\x40-\x7e])")


@dataclass
class _Page:
    colour: bool
    duplex: bool
    copies: int
    paper: str


class _Pcl5:
    """The interpreter state: one instance per job."""

    def __init__(
        self, data: bytes, pjl: PjlHeader, default_paper: str, max_pages: int | None = None
    ) -> None:
        self.data = data
        self.max_pages = max_pages
        self.pjl = pjl
        self.default_paper = pjl.paper or default_paper
        self.pages: list[_Page] = []
        self.truncated = False
        self.reset()
        self.marked = False
        self.colour = False

    # -- state ---------------------------------------------------------------------------

    def reset(self) -> None:
        """ESC E: back to the job defaults (the PJL header's, else the printer's)."""
        self.paper_size = _paper_points(self.default_paper)
        self.landscape = False
        self.duplex = bool(self.pjl.duplex)
        self.copies = self.pjl.copies or 1
        self.vmi = DEFAULT_VMI
        self.perforation_skip = True
        self.line_termination = 0
        self.unit = CP_PER_INCH // 300
        self.set_palette([_WHITE, _BLACK])
        self.component = [0.0, 0.0, 0.0]
        self.cid_space = 0
        self.new_logical_page()

    def new_logical_page(self) -> None:
        self.top = CP_PER_INCH // 2
        self.length = self.page_length - self.top - CP_PER_INCH // 2
        self.y = self.home_y

    @property
    def page_length(self) -> int:
        width, height = self.paper_size
        return int((width if self.landscape else height) * CP_PER_POINT)

    @property
    def home_y(self) -> int:
        return self.top + 3 * self.vmi // 4

    def set_palette(self, entries: list[tuple[int, int, int]]) -> None:
        self.palette = dict(enumerate(entries))
        self.palette_has_colour = any(_colour.is_colour_rgb(*rgb) for rgb in entries)
        # A new palette always starts with a black foreground.
        self.foreground = _BLACK

    def mark(self, *, colour: bool) -> None:
        self.marked = True
        if colour:
            self.colour = True

    def end_page(self, *, always: bool) -> None:
        if not (always or self.marked):
            return
        self.pages.append(
            _Page(
                colour=self.colour and not self.pjl.grey,
                duplex=self.duplex,
                copies=self.copies,
                paper=_paper.paper_name(*self.paper_size),
            )
        )
        self.marked = False
        self.colour = False
        self.y = self.home_y
        if self.max_pages is not None and len(self.pages) > self.max_pages:
            raise PageLimitReached

    def move_down(self, distance: int, *, by_row: bool) -> None:
        """A relative vertical move; by line feeds it ejects pages past the text area."""
        y = self.y + distance
        if not by_row:
            self.y = max(0, min(y, self.page_length))
            return
        limit = self.top + self.length if self.perforation_skip else self.page_length
        if y <= limit:
            self.y = max(0, y)
            return
        self.end_page(always=True)
        self.y = self.home_y if self.perforation_skip else 3 * self.vmi // 4

    # -- parsing -------------------------------------------------------------------------

    def run(self, position: int) -> None:
        data = self.data
        end = len(data)
        while position < end:
            escape = data.find(b"\x1b", position)
            if escape < 0:
                escape = end
            if escape > position:
                self.text(data[position:escape])
            if escape >= end:
                break
            position = self.escape(escape)
        self.end_page(always=False)

    def text(self, span: bytes) -> None:
        for token in _TEXT_TOKENS.finditer(span):
            chunk = token.group()
            if chunk == b"\n":
                self.move_down(self.vmi, by_row=True)
            elif chunk == b"\r":
                if self.line_termination & 1:
                    self.move_down(self.vmi, by_row=True)
            elif chunk == b"\f":
                self.end_page(always=True)
            elif chunk.translate(None, _BLANK):
                self.mark(
                    colour=self.palette_has_colour and _colour.is_colour_rgb(*self.foreground)
                )

    def escape(self, position: int) -> int:
        """Interpret the escape sequence at *position*; returns where parsing continues."""
        data = self.data
        if position + 1 >= len(data):
            return len(data)
        kind = data[position + 1]
        if kind == 0x45:  # ESC E
            self.end_page(always=False)
            self.reset()
            return position + 2
        if kind == 0x3D:  # ESC =  half line feed
            self.move_down(self.vmi // 2, by_row=True)
            return position + 2
        if not 0x21 <= kind <= 0x2F:
            return position + 2  # other two-character escapes change nothing we count
        if data[position : position + len(UEL)] == UEL:
            return self.universal_exit(position + len(UEL))
        return self.parameterised(position, chr(kind))

    def parameterised(self, position: int, kind: str) -> int:
        data = self.data
        position += 2
        group = ""
        if position < len(data) and 0x60 <= data[position] <= 0x7E:
            group = chr(data[position])
            position += 1
        while True:
            match = _PARAM.match(data, position)
            if match is None:
                return position  # malformed: resume at the next byte
            value_text, letter = match.group(1).decode(), chr(match.group(2)[0])
            position = match.end()
            try:
                value = float(value_text) if value_text not in ("", "+", "-", ".") else 0.0
            except ValueError:
                value = 0.0
            signed = value_text[:1] in ("+", "-")
            command = letter.upper()
            if kind == "%" and command == "B":
                position = self.hpgl2(position)
                return position
            position = self.command(kind, group, command, value, signed, position)
            if not letter.islower():
                return position

    def command(
        self, kind: str, group: str, command: str, value: float, signed: bool, position: int
    ) -> int:
        """Apply one command; returns the position after any data bytes it carries."""
        key = kind + group + command
        number = int(value)
        if (
            command in "WVX"
            and position + max(number, 0) > len(self.data)
            and self.carries_data(key)
        ):
            self.truncated = True
        if key in ("*bW", "*bV"):  # raster row / plane data
            if number > 0:
                self.mark(colour=self.palette_has_colour)
            return position + max(number, 0)
        if key == "&pX":  # transparent print data
            if number > 0:
                self.mark(
                    colour=self.palette_has_colour and _colour.is_colour_rgb(*self.foreground)
                )
            return position + max(number, 0)
        if key == "*vW":
            self.configure_image_data(self.data[position : position + max(number, 0)])
            return position + max(number, 0)
        if command == "W" and kind != "%":
            return position + max(number, 0)  # fonts, patterns, symbol sets...
        handler = _COMMANDS.get(key)
        if handler is not None:
            handler(self, value, signed)
        return position

    @staticmethod
    def carries_data(key: str) -> bool:
        return key in ("*bW", "*bV", "&pX") or (key.endswith("W") and not key.startswith("%"))

    def universal_exit(self, position: int) -> int:
        """UEL: the PCL job ends; another PJL-wrapped PCL job may follow."""
        self.end_page(always=False)
        following = read_pjl(UEL + self.data[position : position + 4096])
        if following.present and following.language == "pcl5":
            return position + following.body_offset - len(UEL)
        return len(self.data)

    def hpgl2(self, position: int) -> int:
        """HP-GL/2 runs until the next escape; it marks the page if it draws."""
        end = self.data.find(b"\x1b", position)
        end = len(self.data) if end < 0 else end
        block = self.data[position:end]
        if _HPGL_MARKS.search(block):
            self.mark(colour=self.palette_has_colour and bool(_HPGL_PEN_COLOUR.search(block)))
        return end

    def configure_image_data(self, cid: bytes) -> None:
        """ESC*v#W: a new palette in the configured colour space."""
        if len(cid) < 6:
            return
        space, bits_per_index = cid[0], cid[2]
        self.cid_space = space
        if bits_per_index <= 1:
            entries = [_WHITE, _BLACK]
        else:
            entries = list(_CMY_ORDER if space == 1 else _RGB_ORDER)
            entries += [_BLACK] * max(0, min(1 << bits_per_index, 256) - len(entries))
        self.set_palette(entries)

    # -- command handlers ------------------------------------------------------------------

    def page_size(self, value: float, signed: bool) -> None:
        size = PAGE_SIZES.get(int(value))
        if size is None:
            return
        self.end_page(always=False)
        self.paper_size = size
        self.new_logical_page()

    def orientation(self, value: float, signed: bool) -> None:
        if int(value) not in (0, 1, 2, 3):
            return
        self.end_page(always=False)
        self.landscape = int(value) in (1, 3)
        self.new_logical_page()

    def simplex_duplex(self, value: float, signed: bool) -> None:
        if int(value) not in (0, 1, 2):
            return
        self.end_page(always=False)
        self.duplex = int(value) != 0

    def copies_command(self, value: float, signed: bool) -> None:
        if int(value) >= 1:
            self.copies = int(value)

    def paper_source(self, value: float, signed: bool) -> None:
        self.end_page(always=False)

    def duplex_side(self, value: float, signed: bool) -> None:
        if 0 <= int(value) <= 2:
            self.end_page(always=True)

    def line_spacing(self, value: float, signed: bool) -> None:
        lpi = int(abs(value)) or 12
        if 48 % lpi == 0:
            self.vmi = CP_PER_INCH // lpi

    def vertical_motion_index(self, value: float, signed: bool) -> None:
        vmi = int(abs(value) * CP_PER_INCH / 48 + 0.5)
        if vmi <= self.page_length:
            self.vmi = vmi

    def top_margin(self, value: float, signed: bool) -> None:
        top = int(abs(value)) * self.vmi
        if top <= self.page_length:
            self.top = top
            self.length = max(0, self.page_length - top - CP_PER_INCH // 2)

    def text_length(self, value: float, signed: bool) -> None:
        length = int(abs(value)) * self.vmi
        if self.top + length <= self.page_length:
            self.length = length

    def perforation(self, value: float, signed: bool) -> None:
        if int(value) in (0, 1):
            self.perforation_skip = int(value) == 1

    def termination(self, value: float, signed: bool) -> None:
        if 0 <= int(value) <= 3:
            self.line_termination = int(value)

    def rows(self, value: float, signed: bool) -> None:
        if signed:
            self.move_down(int(value * self.vmi), by_row=value > 0)
        else:
            self.y = int(value * self.vmi) + self.home_y

    def decipoints(self, value: float, signed: bool) -> None:
        self.vertical(int(value * 10), signed)

    def units(self, value: float, signed: bool) -> None:
        self.vertical(int(value) * self.unit, signed)

    def vertical(self, distance: int, signed: bool) -> None:
        if signed:
            self.move_down(distance, by_row=False)
        else:
            self.y = max(0, min(distance + self.top, self.page_length))

    def unit_of_measure(self, value: float, signed: bool) -> None:
        per_inch = int(value)
        if per_inch > 0 and CP_PER_INCH % per_inch == 0:
            self.unit = CP_PER_INCH // per_inch

    def simple_colour(self, value: float, signed: bool) -> None:
        mode = int(value)
        if mode == 3:
            self.set_palette(list(_RGB_ORDER))
        elif mode == -3:
            self.set_palette(list(_CMY_ORDER))
        elif mode == 1:
            self.set_palette([_WHITE, _BLACK])

    def component_a(self, value: float, signed: bool) -> None:
        self.component[0] = value

    def component_b(self, value: float, signed: bool) -> None:
        self.component[1] = value

    def component_c(self, value: float, signed: bool) -> None:
        self.component[2] = value

    def assign_index(self, value: float, signed: bool) -> None:
        index = int(value)
        if index not in self.palette:
            return
        a, b, c = (max(0.0, min(255.0, v)) for v in self.component)
        if self.cid_space == 1:  # device CMY
            a, b, c = 255 - a, 255 - b, 255 - c
        elif self.cid_space not in (0, 2):
            # Lab and luminance-chrominance entries: neutral only if both chroma axes are 0.
            a, b, c = (
                (0, 0, 0) if self.component[1] == 0 and self.component[2] == 0 else (255, 0, 0)
            )
        self.palette[index] = (int(a), int(b), int(c))
        self.palette_has_colour = self.palette_has_colour or _colour.is_colour_rgb(a, b, c)
        self.component = [0.0, 0.0, 0.0]

    def foreground_colour(self, value: float, signed: bool) -> None:
        self.foreground = self.palette.get(int(value), _BLACK)

    def rectangle(self, value: float, signed: bool) -> None:
        pattern = int(value)
        if pattern == 1:  # white fill draws nothing a printer charges for
            return
        colour = self.palette_has_colour and (
            pattern != 0 or _colour.is_colour_rgb(*self.foreground)
        )
        self.mark(colour=colour)


_COMMANDS = {
    "&lA": _Pcl5.page_size,
    "&lO": _Pcl5.orientation,
    "&lS": _Pcl5.simplex_duplex,
    "&lX": _Pcl5.copies_command,
    "&lH": _Pcl5.paper_source,
    "&aG": _Pcl5.duplex_side,
    "&lD": _Pcl5.line_spacing,
    "&lC": _Pcl5.vertical_motion_index,
    "&lE": _Pcl5.top_margin,
    "&lF": _Pcl5.text_length,
    "&lL": _Pcl5.perforation,
    "&kG": _Pcl5.termination,
    "&aR": _Pcl5.rows,
    "&aV": _Pcl5.decipoints,
    "*pY": _Pcl5.units,
    "&uD": _Pcl5.unit_of_measure,
    "*rU": _Pcl5.simple_colour,
    "*vA": _Pcl5.component_a,
    "*vB": _Pcl5.component_b,
    "*vC": _Pcl5.component_c,
    "*vI": _Pcl5.assign_index,
    "*vS": _Pcl5.foreground_colour,
    "*cP": _Pcl5.rectangle,
}


def _paper_points(name: str) -> tuple[float, float]:
    try:
        return _paper.paper_points(name)
    except KeyError:
        return _paper.paper_points("Letter")


def analyse_pcl5(
    data: bytes, *, pjl: PjlHeader, default_paper: str, max_pages: int | None = None
) -> SpoolAnalysis:
    """Analyse a PCL 5 job; reading stops once it has shown more than *max_pages* pages."""
    interpreter = _Pcl5(data, pjl, default_paper, max_pages)
    try:
        interpreter.run(pjl.body_offset)
    except PageLimitReached:
        pass  # the result has max_pages + 1 pages; pcnet.spool.analyse flags it
    pages = interpreter.pages
    if not pages:
        return failed("pcl5", "the PCL job prints no page", paper_size=interpreter.default_paper)
    colours = [page.colour for page in pages]
    error = None
    if interpreter.truncated:
        # The data of the last command runs past the end of the file: charge the page it
        # was drawing as colour.
        error = "the PCL job is truncated"
        colours[-1] = not pjl.grey
    return from_page_colours(
        "pcl5",
        colours,
        duplex=any(page.duplex for page in pages),
        copies=max(page.copies for page in pages),
        paper_size=pages[0].paper,
        error=error,
    )
