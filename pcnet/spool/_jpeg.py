"""JPEG spool files: one page, colour judged from the decoded pixels.

CUPS prints an image on one page of the queue's default media (``imagetopdf`` scales it to
fit), so the result is one page of *default_paper*. The image is decoded at 1/8 scale (a JPEG
decoder does this for free from the DCT coefficients), which is plenty for the page rule of
:mod:`._colour`; one-component (greyscale) JPEGs are grey without decoding. Pillow is used
because it decodes JPEG (including CMYK and progressive files) natively and fast.
"""

from __future__ import annotations

from PIL import Image, UnidentifiedImageError

from . import _colour
from ._result import SpoolAnalysis, failed, from_page_colours


def analyse_jpeg(path: str, *, default_paper: str) -> SpoolAnalysis:
    try:
        with Image.open(path) as image:
            if image.format != "JPEG":
                return failed("jpeg", "not a JPEG image", paper_size=default_paper)
            if image.mode == "L":
                image.load()  # a truncated file must still fail here
                colour = False
            else:
                image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
                colour = _colour.image_is_colour(image.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
        return failed("jpeg", f"cannot decode the JPEG: {error}", paper_size=default_paper)
    return from_page_colours("jpeg", [colour], paper_size=default_paper)
