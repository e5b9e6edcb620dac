"""PWG raster analysis: headers, run-length decoding to walk pages, colour from pixels."""

from __future__ import annotations

import gzip

from pcnet.spool import analyse

from ._support import (
    CSPACE_CMYK,
    CSPACE_K,
    CSPACE_RGB,
    CSPACE_SRGB,
    LETTER,
    TESTDATA,
    pwg_header,
    pwg_page,
    rgb_page_lines,
)

WIDTH, HEIGHT = 120, 150  # a small page at 60 dpi


def rgb_page(box, **header) -> bytes:
    lines = rgb_page_lines(WIDTH, HEIGHT, box=box)
    return pwg_header(
        width=WIDTH, height=HEIGHT, colour_space=header.pop("colour_space", CSPACE_SRGB), **header
    ) + pwg_page(lines, 3)


def write(tmp_path, data: bytes, name="job.pwg"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_pages_are_walked_by_decoding_the_run_length_data(tmp_path):
    data = (
        b"RaS2"
        + rgb_page((200, 20, 20))
        + rgb_page(None)
        + rgb_page((90, 90, 92))
        + rgb_page((0, 0, 255))
    )
    result = analyse(write(tmp_path, data))
    assert result.format == "pwg-raster"
    assert (result.pages, result.colour_page_numbers, result.fallback) == (4, (1, 4), False)


def test_first_header_gives_paper_duplex_and_copies(tmp_path):
    data = b"RaS2" + rgb_page(None, page_size=LETTER, duplex=True, copies=3) * 2
    result = analyse(write(tmp_path, data))
    assert (result.pages, result.paper_size, result.duplex, result.copies) == (2, "Letter", True, 3)


def test_gzip_compressed_stream(tmp_path):
    data = gzip.compress(b"RaS2" + rgb_page((0, 200, 0)) + rgb_page(None))
    result = analyse(write(tmp_path, data))
    assert (result.format, result.pages, result.colour_page_numbers) == ("pwg-raster", 2, (1,))


def test_black_pages_are_grey_without_looking(tmp_path):
    """One-colour spaces cannot hold colour; the 1-bit pages of the test data are walked too."""
    width = 64
    line = b"\x00" * (width // 8)
    page = pwg_header(width=width, height=100, colour_space=CSPACE_K, bits_per_colour=1, colours=1)
    data = b"RaS2" + (page + pwg_page([line] * 100, 1)) * 3
    assert analyse(write(tmp_path, data)).pages == 3
    assert analyse(TESTDATA / "onepage-a4-300-black-1.pwg").colour_pages == 0


def test_clear_to_end_of_line_code(tmp_path):
    """A run byte of 128 fills the rest of the line with white."""
    header = pwg_header(width=WIDTH, height=2, colour_space=CSPACE_RGB)
    line = b"\x00" + b"\x09" + b"\xff\x00\x00" + b"\x80"  # 10 red pixels, then white
    data = b"RaS2" + header + line * 2 + header + b"\x01" + b"\x80"  # page 2: two white lines
    result = analyse(write(tmp_path, data))
    assert (result.pages, result.colour_page_numbers, result.fallback) == (2, (1,), False)


def test_uncompressed_cups_raster_version_3(tmp_path):
    header = pwg_header(width=WIDTH, height=HEIGHT, colour_space=CSPACE_RGB)
    pixels = b"".join(rgb_page_lines(WIDTH, HEIGHT, box=(10, 10, 250)))
    grey = b"".join(rgb_page_lines(WIDTH, HEIGHT, box=None))
    result = analyse(write(tmp_path, b"RaS3" + header + pixels + header + grey))
    assert (result.pages, result.colour_page_numbers) == (2, (1,))


def test_cmyk_pixels(tmp_path):
    width, height = 40, 20
    header = pwg_header(width=width, height=height, colour_space=CSPACE_CMYK, colours=4)
    black = [b"\x00\x00\x00\xff" * width] * height
    magenta = [b"\x00\xff\x00\x00" * width] * height
    data = b"RaS2" + header + pwg_page(black, 4) + header + pwg_page(magenta, 4)
    assert analyse(write(tmp_path, data)).colour_page_numbers == (2,)


def test_truncated_stream_charges_the_broken_page_as_colour(tmp_path):
    data = b"RaS2" + rgb_page(None) + rgb_page(None)
    result = analyse(write(tmp_path, data[: len(data) - 50]))
    assert result.fallback and "ends inside" in result.error
    assert (result.pages, result.colour_page_numbers) == (2, (2,))


def test_header_with_impossible_fields_falls_back(tmp_path):
    header = bytearray(pwg_header(width=WIDTH, height=HEIGHT, colour_space=CSPACE_RGB))
    header[384:388] = (99).to_bytes(4, "big")  # 99 bits per colour
    result = analyse(write(tmp_path, b"RaS2" + bytes(header)))
    assert result.fallback
    assert (result.pages, result.colour_pages) == (1, 1)


def test_sync_word_alone_falls_back(tmp_path):
    result = analyse(write(tmp_path, b"RaS2"))
    assert result.fallback and "no pages" in result.error


def test_repeated_lines_count_once_per_repeat(tmp_path):
    """Threshold 0.01 % of a 300 x 600 page is 18 pixels: 10 red pixels on one line are grey,
    the same line used three times (one line with a repeat count of 3) is colour."""
    width, height = 300, 600
    white = b"\xff\xff\xff" * width
    dotted = b"\xff\x00\x00" * 10 + b"\xff\xff\xff" * (width - 10)
    header = pwg_header(width=width, height=height, colour_space=CSPACE_SRGB, resolution=300)
    once = [white] * 100 + [dotted] + [white] * (height - 101)
    thrice = [white] * 100 + [dotted] * 3 + [white] * (height - 103)
    assert pwg_page(thrice, 3).count(bytes([2]) + bytes([9])) >= 1  # a repeat count of 3
    data = b"RaS2" + header + pwg_page(once, 3) + header + pwg_page(thrice, 3)
    result = analyse(write(tmp_path, data))
    assert (result.pages, result.colour_page_numbers) == (2, (2,))
