"""PCL XL analysis: pages, media, duplex and copies from the operator stream; colour from paint."""

from __future__ import annotations

import struct
import subprocess

import pytest

from pcnet.spool import analyse

from ._support import TESTDATA

HEADER = b"\x1b%-12345X@PJL ENTER LANGUAGE = PCLXL\n) HP-PCL XL;2;0;test\n"
TRAILER = b"\x49\x42\x1b%-12345X"  # CloseDataSource, EndSession, UEL


def ubyte(value: int) -> bytes:
    return b"\xc0" + bytes([value])


def uint16(value: int) -> bytes:
    return b"\xc1" + struct.pack("<H", value)


def ubyte_array(values: bytes) -> bytes:
    return b"\xc8\xc0" + bytes([len(values)]) + values


def real32_xy(x: float, y: float) -> bytes:
    return b"\xd5" + struct.pack("<ff", x, y)


def uint16_box(*values: int) -> bytes:
    return b"\xe1" + struct.pack("<4H", *values)


def attr(number: int) -> bytes:
    return b"\xf8" + bytes([number])


SESSION = (
    b"\xd1" + struct.pack("<HH", 600, 600) + attr(137)  # UnitsPerMeasure
    + ubyte(0) + attr(134)  # Measure eInch
    + b"\x41"  # BeginSession
    + ubyte(0) + attr(136) + ubyte(1) + attr(130) + b"\x48"  # OpenDataSource
)  # fmt: skip


def page(
    body: bytes, media: bytes = ubyte(2) + attr(37), extra: bytes = b"", copies: int = 1
) -> bytes:
    begin = ubyte(0) + attr(40) + media + extra + b"\x43"  # Orientation, MediaSize, BeginPage
    return begin + body + uint16(copies) + attr(49) + b"\x44"  # PageCopies, EndPage


RGB_SPACE = ubyte(2) + attr(3) + b"\x6a"  # SetColorSpace eRGB
GREY_SPACE = ubyte(1) + attr(3) + b"\x6a"


def brush_rgb(r: int, g: int, b: int) -> bytes:
    return ubyte_array(bytes([r, g, b])) + attr(11) + b"\x63"  # RGBColor, SetBrushSource


RECTANGLE = uint16_box(100, 100, 500, 500) + attr(66) + b"\xa0"  # BoundingBox, Rectangle


def stream(*pages: bytes, pjl: bytes = b"") -> bytes:
    header = HEADER if not pjl else b"\x1b%-12345X" + pjl + HEADER[len(b"\x1b%-12345X") :]
    return header + SESSION + b"".join(pages) + TRAILER


def analyse_pxl(tmp_path, data: bytes):
    path = tmp_path / "job.pxl"
    path.write_bytes(data)
    return analyse(path)


def test_pages_and_colour_of_painted_shapes(tmp_path):
    data = stream(
        page(RGB_SPACE + brush_rgb(200, 30, 30) + RECTANGLE),
        page(RGB_SPACE + brush_rgb(90, 90, 92) + RECTANGLE),  # near-neutral grey
        page(GREY_SPACE + ubyte(128) + attr(9) + b"\x63" + RECTANGLE),
        page(RGB_SPACE + brush_rgb(0, 0, 255)),  # a blue brush that paints nothing
    )
    result = analyse_pxl(tmp_path, data)
    assert result.format == "pclxl"
    assert (result.pages, result.colour_page_numbers, result.fallback) == (4, (1,), False)
    assert (result.paper_size, result.duplex, result.copies) == ("A4", False, 1)


def test_media_name_duplex_and_page_copies(tmp_path):
    duplex = ubyte(0) + attr(53)  # DuplexPageMode eDuplexHorizontalBinding
    data = stream(
        page(b"", media=ubyte_array(b"LETTER") + attr(37), extra=duplex, copies=3),
        page(b"", media=ubyte_array(b"LETTER") + attr(37), extra=duplex, copies=3),
    )
    result = analyse_pxl(tmp_path, data)
    assert (result.pages, result.paper_size, result.duplex, result.copies) == (2, "Letter", True, 3)


def test_custom_media_size(tmp_path):
    media = real32_xy(100, 150) + attr(47) + ubyte(1) + attr(48)  # 100 x 150 mm
    assert analyse_pxl(tmp_path, stream(page(b"", media=media))).paper_size == "100x150mm"


def test_uncompressed_rgb_image_is_judged_by_its_pixels(tmp_path):
    def image(pixel: bytes) -> bytes:
        width, height = 8, 4
        row = pixel * width + b"\x00" * ((-width * 3) % 4)  # rows padded to 4 bytes
        data = row * height
        begin = (
            ubyte(0) + attr(100) + ubyte(2) + attr(98)  # eDirectPixel, e8Bit
            + uint16(width) + attr(108) + uint16(height) + attr(107)
            + b"\xd1" + struct.pack("<HH", 80, 40) + attr(103) + b"\xb0"  # DestinationSize
        )  # fmt: skip
        read = uint16(0) + attr(109) + uint16(height) + attr(99) + ubyte(0) + attr(101) + b"\xb1"
        return begin + read + b"\xfa" + struct.pack("<I", len(data)) + data + b"\xb2"

    data = stream(
        page(RGB_SPACE + image(b"\x10\xe0\x10")), page(RGB_SPACE + image(b"\x80\x80\x80"))
    )
    assert analyse_pxl(tmp_path, data).colour_page_numbers == (1,)


def test_pjl_greyscale_rendering(tmp_path):
    pjl = b"@PJL SET RENDERMODE=GRAYSCALE\n"
    data = stream(page(RGB_SPACE + brush_rgb(255, 0, 0) + RECTANGLE), pjl=pjl)
    assert analyse_pxl(tmp_path, data).colour_pages == 0


def test_truncated_stream_falls_back_for_the_broken_page(tmp_path):
    whole = stream(
        page(GREY_SPACE + RECTANGLE),
        page(GREY_SPACE + RECTANGLE),
    )
    cut = whole[: whole.rindex(b"\xa0") - 3]  # inside the second page's BoundingBox value
    result = analyse_pxl(tmp_path, cut)
    assert result.fallback and "PCL XL" in result.error
    assert (result.pages, result.colour_page_numbers) == (2, (2,))


def test_stream_without_pages_falls_back(tmp_path):
    result = analyse_pxl(tmp_path, stream())
    assert result.fallback
    assert (result.pages, result.colour_pages) == (1, 1)


@pytest.fixture(scope="module")
def ghostscript_pxl(tmp_path_factory):
    """PCL XL written by Ghostscript's pxlcolor and pxlmono drivers from the CUPS test files."""
    directory = tmp_path_factory.mktemp("pxl")

    def convert(source: str, device: str, *options: str):
        target = directory / f"{source}.{device}{''.join(options)}.pxl"
        subprocess.run(
            ["gs", "-q", "-dSAFER", "-dBATCH", "-dNOPAUSE", f"-sDEVICE={device}", *options,
             f"-sOutputFile={target}", str(TESTDATA / source)],
            check=True, timeout=60,
        )  # fmt: skip
        return target

    return convert


def test_ghostscript_pxlcolor_output(ghostscript_pxl):
    result = analyse(ghostscript_pxl("colors.pdf", "pxlcolor"))
    assert (result.format, result.pages, result.colour_page_numbers) == (
        "pclxl",
        10,
        (2, 3, 4, 5, 6, 7),
    )
    assert result.paper_size == "A4"


def test_ghostscript_pxlmono_output_is_grey(ghostscript_pxl):
    result = analyse(ghostscript_pxl("colors.pdf", "pxlmono"))
    assert (result.pages, result.colour_pages) == (10, 0)


def test_ghostscript_pxl_vector_colour_and_custom_media(ghostscript_pxl):
    """testfile.pdf's block diagram becomes thousands of RGB-brushed rectangles."""
    result = analyse(ghostscript_pxl("testfile.pdf", "pxlcolor", "-r150"))
    assert (result.pages, result.colour_page_numbers) == (8, (2,))
    assert result.paper_size == "210x279mm"  # the file's own odd size, sent as a custom size


def test_ghostscript_pxl_images_duplex_and_copies(ghostscript_pxl):
    """document-a4.pdf's photographs become RLE-compressed RGB images: decoded and judged, the
    near-neutral photograph of page 2 included."""
    path = ghostscript_pxl("document-a4.pdf", "pxlcolor", "-dDuplex=true", "-dNumCopies=2", "-r100")
    assert b"\xc0\x01\xf8\x65\xb1" in path.read_bytes()  # ReadImage with CompressMode eRLE
    result = analyse(path)
    assert (result.pages, result.colour_page_numbers) == (4, (1, 3))
    assert (result.duplex, result.copies, result.paper_size) == (True, 2, "A4")


@pytest.mark.parametrize("compress_mode", [1, 2, 3])  # RLE, JPEG, delta row
def test_every_image_compression_ghostscript_writes_is_decoded(ghostscript_pxl, compress_mode):
    """Undecodable images count as colour: the grey photograph of page 2 shows they are decoded."""
    path = ghostscript_pxl(
        "document-a4.pdf", "pxlcolor", f"-dCompressMode={compress_mode}", "-r100"
    )
    assert bytes([0xC0, compress_mode, 0xF8, 0x65, 0xB1]) in path.read_bytes()
    assert analyse(path).colour_page_numbers == (1, 3)
