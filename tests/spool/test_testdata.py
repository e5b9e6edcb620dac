"""Every file of the shared spool test data is analysed as its README table says.

The expected figures are the README's: pages, which pages are colour (1-based), the format,
and A4 or Letter for the files named so. Ghostscript must be installed: these tests do not skip.
"""

from __future__ import annotations

import time

import pytest

from pcnet.spool import analyse

from ._support import TESTDATA

# file: (format, pages, colour page numbers, paper size or None when the README says nothing)
EXPECTED = {
    "document-a4.pdf": ("pdf", 4, (1, 3), "A4"),
    "document-letter.pdf": ("pdf", 4, (1, 3), "Letter"),
    "document-a4.ps": ("postscript", 4, (1, 3), "A4"),
    "document-letter.ps": ("postscript", 4, (1, 3), "Letter"),
    "onepage-a4.pdf": ("pdf", 1, (1,), "A4"),
    "onepage-letter.pdf": ("pdf", 1, (1,), "Letter"),
    "onepage-a4.ps": ("postscript", 1, (1,), "A4"),
    "onepage-letter.ps": ("postscript", 1, (1,), "Letter"),
    "testfile.pdf": ("pdf", 8, (2,), None),
    "testfile.ps": ("postscript", 1, (1,), None),
    "testfile.pcl": ("pcl5", 1, (), None),
    "testfile.txt": ("text", 1, (), None),
    "onepage-a4-300-black-1.pwg": ("pwg-raster", 1, (), "A4"),
    "onepage-letter-300-black-1.pwg": ("pwg-raster", 1, (), "Letter"),
    "color.jpg": ("jpeg", 1, (1,), None),
    "gray.jpg": ("jpeg", 1, (), None),
    "testfile.jpg": ("jpeg", 1, (1,), None),
    "colors.pdf": ("pdf", 10, (2, 3, 4, 5, 6, 7), None),
}


def test_every_spool_test_file_has_an_expectation():
    """A file added to the shared test data must be added to this table."""
    spool_files = {
        p.name
        for p in TESTDATA.iterdir()
        if not p.name.startswith(("LICENSE", "NOTICE", "COPYING"))
    }
    assert spool_files == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_test_data_file_matches_readme(name):
    format_, pages, colour_pages, paper = EXPECTED[name]
    result = analyse(TESTDATA / name)
    assert result.error is None
    assert not result.fallback
    assert result.format == format_
    assert result.pages == pages
    assert result.colour_page_numbers == colour_pages
    assert result.colour_pages == len(colour_pages)
    if paper is not None:
        assert result.paper_size == paper
    assert result.copies == 1
    assert result.duplex is False


def test_near_neutral_photograph_is_a_grey_page():
    """Page 2 of the CUPS documents is a near-neutral photograph: the threshold calls it grey."""
    for name in ("document-a4.pdf", "document-letter.pdf", "document-a4.ps", "document-letter.ps"):
        assert 2 not in analyse(TESTDATA / name).colour_page_numbers


def test_files_without_a_paper_size_use_the_queue_default():
    """Text and JPEG state no paper; the caller's default media is reported for them."""
    assert analyse(TESTDATA / "testfile.txt", default_paper="A4").paper_size == "A4"
    assert analyse(TESTDATA / "testfile.txt", default_paper="a4").paper_size == "A4"
    assert analyse(TESTDATA / "color.jpg", default_paper="Letter").paper_size == "Letter"
    # pcnet's one default paper size, when the print server says none (the provider's is
    # [analysis] paper_size).
    assert analyse(TESTDATA / "color.jpg").paper_size == "A4"
    # testfile.ps has no DocumentMedia, but its %%BoundingBox is exactly a Letter sheet.
    assert analyse(TESTDATA / "testfile.ps", default_paper="A4").paper_size == "Letter"


def test_whole_test_data_set_analyses_in_a_few_seconds():
    started = time.perf_counter()
    for name in EXPECTED:
        analyse(TESTDATA / name)
    assert time.perf_counter() - started < 10
