"""Builders for the spool files the tests make themselves (PDF, PostScript, PCL, PWG raster)."""

from __future__ import annotations

import struct
from pathlib import Path

import pikepdf
from pikepdf import Dictionary, Name

TESTDATA = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "spool"

A4 = (595, 842)
LETTER = (612, 792)


def write_pdf(
    path: Path,
    page_contents: list[bytes],
    *,
    size: tuple[float, float] = A4,
    object_streams: bool = False,
    viewer_preferences: dict | None = None,
) -> Path:
    """A PDF with one page per content stream, Helvetica available as /F1."""
    pdf = pikepdf.Pdf.new()
    font = pdf.make_indirect(
        Dictionary(Type=Name.Font, Subtype=Name.Type1, BaseFont=Name.Helvetica)
    )
    for content in page_contents:
        page = pdf.add_blank_page(page_size=size)
        page.obj.Resources = Dictionary(Font=Dictionary(F1=font))
        page.obj.Contents = pdf.make_stream(content)
    if viewer_preferences:
        pdf.Root.ViewerPreferences = Dictionary(viewer_preferences)
    mode = pikepdf.ObjectStreamMode.generate if object_streams else pikepdf.ObjectStreamMode.disable
    pdf.save(path, object_stream_mode=mode, compress_streams=True)
    return path


def red_text(size: float = 10, text: bytes = b"Invoice") -> bytes:
    return b"BT /F1 %g Tf 1 0 0 rg 72 700 Td (%s) Tj ET" % (size, text)


def grey_text(text: bytes = b"Grey text only") -> bytes:
    return b"BT /F1 10 Tf 0.3 g 72 700 Td (%s) Tj ET" % text


def filled_box(r: float, g: float, b: float) -> bytes:
    """A 5 x 5 cm box filled with one RGB colour."""
    return b"%g %g %g rg 72 500 142 142 re f" % (r, g, b)


def postscript(
    pages: int, *, dsc_pages: int | None = None, setup: bytes = b"", colour: bool = False
) -> bytes:
    """A small PostScript job of *pages* pages; *dsc_pages* is what its %%Pages: claims."""
    lines = [b"%!PS-Adobe-3.0"]
    if dsc_pages is not None:
        lines.append(b"%%%%Pages: %d" % dsc_pages)
    lines += [b"%%EndComments", setup, b"/Helvetica findfont 24 scalefont setfont"]
    for number in range(1, pages + 1):
        lines.append(b"%%%%Page: %d %d" % (number, number))
        lines.append(b"1 0 0 setrgbcolor" if colour else b"0 setgray")
        lines.append(b"72 700 moveto (Page %d) show showpage" % number)
    lines.append(b"%%EOF")
    return b"\n".join(lines) + b"\n"


# -- PCL ------------------------------------------------------------------------------------

ESC = b"\x1b"


def pcl_lines(count: int, text: bytes = b"All work and no play makes Jack a dull boy.") -> bytes:
    return b"\r\n".join([text] * count)


# -- PWG raster -----------------------------------------------------------------------------

CSPACE_RGB, CSPACE_K, CSPACE_SGRAY, CSPACE_SRGB, CSPACE_CMYK = 1, 3, 18, 19, 6


def pwg_header(
    *,
    width: int,
    height: int,
    colour_space: int,
    bits_per_colour: int = 8,
    colours: int = 3,
    page_size: tuple[int, int] = A4,
    duplex: bool = False,
    copies: int = 1,
    resolution: int = 60,
) -> bytes:
    """A 1796-byte PWG page header (big-endian) with the fields the analysis reads."""
    header = bytearray(1796)
    header[0:9] = b"PwgRaster"

    def put(offset: int, value: int) -> None:
        struct.pack_into(">I", header, offset, value)

    bits_per_pixel = bits_per_colour * colours
    put(272, int(duplex))
    put(276, resolution)
    put(280, resolution)
    put(340, copies)
    put(352, page_size[0])
    put(356, page_size[1])
    put(372, width)
    put(376, height)
    put(384, bits_per_colour)
    put(388, bits_per_pixel)
    put(392, (width * bits_per_pixel + 7) // 8)
    put(396, 0)  # chunky
    put(400, colour_space)
    put(420, colours)
    return bytes(header)


def pwg_compress_line(line: bytes, unit: int) -> bytes:
    """Encode one line with the PWG run-length code (repeat runs and literal runs)."""
    pixels = [line[i : i + unit] for i in range(0, len(line), unit)]
    count = len(pixels)
    out = bytearray()
    i = 0
    while i < count:
        run = 1
        while i + run < count and run < 128 and pixels[i + run] == pixels[i]:
            run += 1
        if run > 1 or i + 1 == count:
            out.append(run - 1)
            out += pixels[i]
            i += run
            continue
        start = i
        while i < count and i - start < 128 and not (i + 1 < count and pixels[i + 1] == pixels[i]):
            i += 1
        if i - start == 1:
            out.append(0)
            out += pixels[start]
        else:
            out.append(257 - (i - start))
            out += b"".join(pixels[start:i])
    return bytes(out)


def pwg_page(lines: list[bytes], unit: int) -> bytes:
    """Compress a page's lines, folding identical consecutive lines into repeat counts."""
    out = bytearray()
    i = 0
    while i < len(lines):
        repeat = 1
        while i + repeat < len(lines) and repeat < 256 and lines[i + repeat] == lines[i]:
            repeat += 1
        out.append(repeat - 1)
        out += pwg_compress_line(lines[i], unit)
        i += repeat
    return bytes(out)


def rgb_page_lines(width: int, height: int, *, box: tuple[int, int, int] | None) -> list[bytes]:
    """A white RGB page, with a 20 x 20 pixel box of colour *box* near the top left if given."""
    white = b"\xff\xff\xff" * width
    lines = []
    for y in range(height):
        if box is not None and 10 <= y < 30:
            lines.append(b"\xff\xff\xff" * 10 + bytes(box) * 20 + b"\xff\xff\xff" * (width - 30))
        else:
            lines.append(white)
    return lines


def raw_pdf(page_contents: list[bytes], *, kids: bool = True, count: int | None = None,
            root_extra: bytes = b"", page_extra: bytes = b"/MediaBox [0 0 595 842]") -> bytes:
    """A hand-written PDF (no library would write a broken one): catalog, page tree root,
    one page object and content stream per entry of *page_contents*. ``kids=False`` leaves
    ``/Kids`` out of the root, as py-pdf's sample ``unreadablemetadata.pdf`` does."""
    objects = {1: b"<< /Type /Catalog /Pages 2 0 R >>"}
    page_numbers = [3 + 2 * i for i in range(len(page_contents))]
    kids_entry = b"/Kids [" + b" ".join(b"%d 0 R" % n for n in page_numbers) + b"] " if kids else b""
    objects[2] = (b"<< /Type /Pages /Count %d " % (len(page_contents) if count is None else count)
                  + kids_entry + root_extra + b" >>")
    for number, content in zip(page_numbers, page_contents):
        objects[number] = (b"<< /Type /Page /Parent 2 0 R " + page_extra
                           + b" /Contents %d 0 R >>" % (number + 1))
        objects[number + 1] = (b"<< /Length %d >>\nstream\n" % len(content) + content
                               + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + objects[number] + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offsets[n] for n in sorted(objects))
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return bytes(out)
