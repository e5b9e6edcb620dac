"""JPEG: one page, colour judged from the pixels whatever the component count or name."""

from __future__ import annotations

from PIL import Image

from pcnet.spool import analyse

from ._support import TESTDATA


def test_single_component_jpeg_is_grey(tmp_path):
    path = tmp_path / "grey.jpg"
    Image.new("L", (64, 64), 128).save(path)
    result = analyse(path)
    assert (result.format, result.pages, result.colour_pages) == ("jpeg", 1, 0)


def test_three_component_grey_jpeg_is_grey_and_a_tinted_one_is_colour(tmp_path):
    grey = tmp_path / "grey-rgb.jpg"
    Image.new("RGB", (256, 256), (120, 120, 120)).save(grey, quality=75)
    tinted = tmp_path / "tinted.jpg"
    image = Image.new("RGB", (256, 256), (120, 120, 120))
    image.paste((200, 120, 40), (0, 0, 64, 64))
    image.save(tinted)
    assert analyse(grey).colour_pages == 0
    assert analyse(tinted).colour_pages == 1


def test_truncated_jpeg_falls_back(tmp_path):
    path = tmp_path / "cut.jpg"
    path.write_bytes((TESTDATA / "color.jpg").read_bytes()[:2000])
    result = analyse(path)
    assert result.format == "jpeg"
    assert result.fallback and "JPEG" in result.error
    assert (result.pages, result.colour_pages) == (1, 1)
