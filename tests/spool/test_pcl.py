"""PCL 5 analysis: page ejects, text overflow, binary data, job settings and colour commands."""

from __future__ import annotations

import pytest

from pcnet.spool import analyse

from ._support import ESC, pcl_lines

RESET = ESC + b"E"
FF = b"\x0c"


def analyse_pcl(tmp_path, data: bytes, **options):
    """These cases are written for a print server whose default paper is Letter."""
    path = tmp_path / "job.pcl"
    path.write_bytes(data)
    options.setdefault("default_paper", "Letter")
    return analyse(path, **options)


def test_form_feeds_and_resets_count_pages(tmp_path):
    data = RESET + b"one" + FF + b"two" + FF + b"three" + FF + RESET
    result = analyse_pcl(tmp_path, data)
    assert result.format == "pcl5"
    assert (result.pages, result.colour_pages, result.fallback) == (3, 0, False)


def test_reset_prints_a_partly_drawn_page_but_not_a_blank_one(tmp_path):
    assert analyse_pcl(tmp_path, RESET + b"text" + RESET + RESET).pages == 1


def test_form_feed_prints_even_a_blank_page(tmp_path):
    assert analyse_pcl(tmp_path, RESET + b"text" + FF + FF + RESET).pages == 2


def test_end_of_job_prints_the_last_drawn_page(tmp_path):
    assert analyse_pcl(tmp_path, RESET + b"page one" + FF + b"page two").pages == 2


@pytest.mark.parametrize(
    "lines, paper_command, pages",
    [
        (60, b"", 1),  # Letter: 60 lines of text fit on a page
        (61, b"", 2),
        (120, b"", 2),
        (64, ESC + b"&l26A", 1),  # A4: 64 lines
        (65, ESC + b"&l26A", 2),
    ],
)
def test_text_overflowing_the_text_area_ejects_a_page(tmp_path, lines, paper_command, pages):
    data = RESET + paper_command + pcl_lines(lines) + RESET
    assert analyse_pcl(tmp_path, data).pages == pages


def test_lines_per_inch_change_the_page_length(tmp_path):
    data = RESET + ESC + b"&l8D" + pcl_lines(80) + RESET  # 8 lpi on Letter: 80 lines
    assert analyse_pcl(tmp_path, data).pages == 1
    data = RESET + ESC + b"&l8D" + pcl_lines(81) + RESET
    assert analyse_pcl(tmp_path, data).pages == 2


def test_perforation_skip_off_lets_text_run_to_the_page_bottom(tmp_path):
    # From the half-inch top margin to the bottom of a Letter page there is room for 63 lines.
    assert analyse_pcl(tmp_path, RESET + pcl_lines(63) + RESET).pages == 2
    assert analyse_pcl(tmp_path, RESET + ESC + b"&l0L" + pcl_lines(63) + RESET).pages == 1
    assert analyse_pcl(tmp_path, RESET + ESC + b"&l0L" + pcl_lines(64) + RESET).pages == 2


def test_duplex_copies_and_page_size_escapes(tmp_path):
    data = RESET + ESC + b"&l26a2x1S" + b"front" + FF + b"back" + FF + RESET
    result = analyse_pcl(tmp_path, data)
    assert (result.pages, result.duplex, result.copies, result.paper_size) == (2, True, 2, "A4")


def test_separate_escapes_for_copies_and_short_edge_duplex(tmp_path):
    data = RESET + ESC + b"&l3X" + ESC + b"&l2S" + ESC + b"&l1A" + b"x" + FF + RESET
    result = analyse_pcl(tmp_path, data)
    assert (result.pages, result.duplex, result.copies, result.paper_size) == (
        1,
        True,
        3,
        "Executive",
    )


def test_simplex_job_without_settings_uses_defaults(tmp_path):
    result = analyse_pcl(tmp_path, RESET + b"x" + FF + RESET, default_paper="A4")
    assert (result.duplex, result.copies, result.paper_size) == (False, 1, "A4")


def test_binary_data_is_skipped_by_its_length(tmp_path):
    raster = bytes([0x0C] * 40)  # form feed bytes inside raster data must not eject pages
    font = bytes([0x0C, 0x1B, 0x45] * 20)
    data = (
        RESET
        + ESC + b")s%dW" % len(font) + font
        + ESC + b"*r1A"
        + (ESC + b"*b%dW" % len(raster) + raster) * 5
        + ESC + b"*rB"
        + FF
        + RESET
    )  # fmt: skip
    result = analyse_pcl(tmp_path, data)
    assert (result.pages, result.colour_pages) == (1, 0)


def test_raster_graphics_mark_a_page(tmp_path):
    data = RESET + ESC + b"*r1A" + ESC + b"*b2W\xff\xff" + ESC + b"*rB" + RESET
    assert analyse_pcl(tmp_path, data).pages == 1


def test_colour_text_makes_a_colour_page(tmp_path):
    red = ESC + b"*r3U" + ESC + b"*v1S"  # simple RGB palette, foreground index 1 = red
    black = ESC + b"*v0S"
    data = RESET + b"grey" + FF + red + b"red" + FF + black + b"black again" + FF + RESET
    result = analyse_pcl(tmp_path, data)
    assert (result.pages, result.colour_page_numbers) == (3, (2,))


def test_colour_palette_with_black_text_stays_grey(tmp_path):
    data = RESET + ESC + b"*r3U" + b"black text on a colour printer" + FF + RESET
    assert analyse_pcl(tmp_path, data).colour_pages == 0


def test_configured_palette_entry_colour(tmp_path):
    cid = bytes([0, 1, 8, 8, 8, 8])  # device RGB, indexed by pixel, 8 bits per index
    data = (
        RESET
        + ESC + b"*v6W" + cid
        + ESC + b"*v128a128b128c20I"  # index 20 := mid grey
        + ESC + b"*v20S" + b"grey" + FF
        + ESC + b"*v0a0b200c21I"  # index 21 := blue
        + ESC + b"*v21S" + b"blue" + FF
        + RESET
    )  # fmt: skip
    assert analyse_pcl(tmp_path, data).colour_page_numbers == (2,)


def test_pjl_header_sets_job_defaults(tmp_path):
    pjl = (
        b"\x1b%-12345X@PJL JOB\r\n@PJL SET COPIES=4\r\n@PJL SET DUPLEX=ON\r\n"
        b"@PJL SET PAPER=A4\r\n@PJL ENTER LANGUAGE=PCL\r\n"
    )
    data = pjl + RESET + b"x" + FF + RESET + b"\x1b%-12345X@PJL EOJ\r\n\x1b%-12345X"
    result = analyse_pcl(tmp_path, data)
    assert (result.format, result.pages, result.copies, result.duplex, result.paper_size) == (
        "pcl5", 1, 4, True, "A4",
    )  # fmt: skip


def test_pjl_greyscale_rendering_makes_every_page_grey(tmp_path):
    pjl = b"\x1b%-12345X@PJL SET RENDERMODE=GRAYSCALE\n@PJL ENTER LANGUAGE=PCL\n"
    data = pjl + RESET + ESC + b"*r3U" + ESC + b"*v1S" + b"red" + FF + RESET
    assert analyse_pcl(tmp_path, data).colour_pages == 0


def test_pcl_job_that_prints_nothing_falls_back(tmp_path):
    result = analyse_pcl(tmp_path, RESET + ESC + b"&l2X" + RESET)
    assert result.fallback and "no page" in result.error
    assert (result.pages, result.colour_pages) == (1, 1)


def test_truncated_job_charges_its_last_page_as_colour(tmp_path):
    result = analyse_pcl(tmp_path, RESET + b"text" + FF + ESC + b"*r1A" + ESC + b"*b100W\x00\x00")
    assert result.fallback and "truncated" in result.error
    assert (result.pages, result.colour_page_numbers) == (2, (2,))


def test_unknown_and_malformed_escapes_are_ignored(tmp_path):
    data = RESET + ESC + b"&z99Q" + ESC + b"*" + b"text" + ESC + b"Y" + FF + ESC
    result = analyse_pcl(tmp_path, data)
    assert (result.pages, result.fallback) == (1, False)
