"""Plain text: pages as CUPS's text filter lays them out by default (80 x 60 on Letter)."""

from __future__ import annotations

import pytest

from pcnet.spool import analyse
from pcnet.spool._text import layout


def analyse_text(tmp_path, text: str, **options):
    """These cases lay text out for a print server whose default paper is Letter."""
    path = tmp_path / "job.txt"
    path.write_bytes(text.encode())
    options.setdefault("default_paper", "Letter")
    return analyse(path, **options)


def test_default_layout_matches_the_cups_filter():
    assert layout("Letter") == (80, 60)
    assert layout("A4") == (77, 64)


@pytest.mark.parametrize("lines, pages", [(1, 1), (60, 1), (61, 2), (120, 2), (121, 3)])
def test_lines_per_page(tmp_path, lines, pages):
    result = analyse_text(tmp_path, "line\n" * lines)
    assert (result.format, result.pages, result.colour_pages) == ("text", pages, 0)


def test_a4_queue_fits_more_lines(tmp_path):
    assert analyse_text(tmp_path, "x\n" * 64, default_paper="A4").pages == 1
    assert analyse_text(tmp_path, "x\n" * 64).pages == 2


def test_without_a_default_paper_text_is_laid_out_on_pcnets_default_a4(tmp_path):
    path = tmp_path / "job.txt"
    path.write_bytes(b"x\n" * 64)
    result = analyse(path)
    assert (result.pages, result.paper_size) == (1, "A4")


def test_long_lines_wrap(tmp_path):
    assert analyse_text(tmp_path, ("y" * 80 + "\n") * 60).pages == 1
    assert analyse_text(tmp_path, ("y" * 81 + "\n") * 60).pages == 2  # each line takes two


def test_form_feed_starts_a_new_page(tmp_path):
    assert analyse_text(tmp_path, "one\fpage two\f\fthree\n").pages == 3


def test_blank_lines_take_paper(tmp_path):
    assert analyse_text(tmp_path, "\n\n\f\n").pages == 2


def test_text_of_form_feeds_only_falls_back(tmp_path):
    result = analyse_text(tmp_path, "\f\f")
    assert result.fallback
    assert (result.pages, result.colour_pages) == (1, 1)
