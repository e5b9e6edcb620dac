"""The result type and the paper size names."""

from __future__ import annotations

import pytest

from pcnet.spool import SpoolAnalysis
from pcnet.spool._paper import paper_name
from pcnet.spool._result import failed, from_page_colours


def test_result_refuses_zero_pages():
    with pytest.raises(ValueError):
        SpoolAnalysis("pdf", 0, 0, False, 1, "A4")


def test_result_keeps_colour_figures_consistent():
    with pytest.raises(ValueError):
        SpoolAnalysis("pdf", 2, 1, False, 1, "A4", colour_page_numbers=())
    with pytest.raises(ValueError):
        SpoolAnalysis("pdf", 2, 1, False, 1, "A4", colour_page_numbers=(3,))


def test_fallback_must_say_why():
    with pytest.raises(ValueError):
        SpoolAnalysis("pdf", 1, 1, False, 1, "A4", fallback=True)


def test_fallback_charges_colour_pages():
    result = failed("pdf", "broken", pages=3)
    assert (result.pages, result.colour_page_numbers, result.fallback) == (3, (1, 2, 3), True)
    assert failed("unknown", "broken", pages=0).pages == 1


def test_to_json():
    result = from_page_colours("pcl5", [False, True, False], duplex=True, copies=2, paper_size="A4")
    assert result.to_json() == {
        "format": "pcl5",
        "pages": 3,
        "colour_pages": 1,
        "colour_page_numbers": [2],
        "duplex": True,
        "copies": 2,
        "paper_size": "A4",
        "error": None,
        "fallback": False,
        "limits_hit": [],
    }
    assert result.grey_pages == 2


@pytest.mark.parametrize(
    "width, height, name",
    [
        (595, 842, "A4"),
        (595.28, 841.89, "A4"),
        (842, 595, "A4"),
        (612, 792, "Letter"),
        (612, 1008, "Legal"),
        (842, 1191, "A3"),
        (595, 792, "210x279mm"),
        (283.46, 425.2, "100x150mm"),
    ],
)
def test_paper_names(width, height, name):
    assert paper_name(width, height) == name
