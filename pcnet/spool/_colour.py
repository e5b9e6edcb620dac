"""How pcnet decides that a page is a colour page, from its pixels.

The method, shared by every format whose pages can be seen as pixels (Ghostscript's rendering
of PDF and PostScript, the pixels of PWG raster, JPEG and PCL XL images):

1. Look at the page as 8-bit RGB. Ghostscript renders PDF and PostScript pages at
   :data:`RENDER_DPI` dpi with 4-bit anti-aliasing: anti-aliasing mixes a thin coloured stroke
   with the white around it in proportion to its coverage, so small coloured text still leaves
   tinted pixels at a low resolution, while blending neutrals only ever gives neutrals.
2. A pixel is *chromatic* when ``max(R, G, B) - min(R, G, B) > CHROMA_THRESHOLD``.
   A neutral grey has R = G = B whatever inks would print it, so this asks "does the page
   show colour", not "which toners would a printer use" (Ghostscript's ``inkcov`` and
   ``ink_cov`` devices answer the second question and mislead: a red area printed with
   three inks looks neutral to one, rich black text looks coloured to the other).
3. The page is a colour page when chromatic pixels make up more than
   :data:`COLOUR_PAGE_FRACTION` of it.

Why these figures. ``CHROMA_THRESHOLD`` = 32 of 255 (12.5 %) sits well above the tint of
near-neutral photographs and of JPEG chroma noise, and well below any real colour (primaries,
pastel logos, a blue hyperlink differ by 60 or more). Page 2 of the CUPS test files
``document-a4.pdf``/``.ps`` is a near-neutral photograph: its most tinted pixel differs by 3
of 255 in the A4 file and by 16 in the Letter file (about 20 at 150 dpi), so with this
threshold it counts as a grey page, which is what it looks like on paper.
``COLOUR_PAGE_FRACTION`` = 0.01 % of the page (about 9 pixels of an A4 page at 30 dpi, some
6 mm²) ignores a stray tinted pixel but catches one short word of 8 pt coloured text or a thin
coloured rule; a lone coloured 6 pt character stays grey. A user who prints a page with a red
signature should expect a colour charge: a colour printer uses colour toner for it.
"""

from __future__ import annotations

from PIL import Image, ImageChops

RENDER_DPI = 30
CHROMA_THRESHOLD = 32
COLOUR_PAGE_FRACTION = 0.0001


def chromatic_pixels(image: Image.Image) -> int:
    """Count the pixels of an RGB *image* whose channels differ by more than the threshold."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    red, green, blue = image.split()
    highest = ImageChops.lighter(ImageChops.lighter(red, green), blue)
    lowest = ImageChops.darker(ImageChops.darker(red, green), blue)
    histogram = ImageChops.subtract(highest, lowest).histogram()
    return sum(histogram[CHROMA_THRESHOLD + 1 :])


def is_colour(chromatic: int, total: int) -> bool:
    """Whether *chromatic* pixels out of *total* make a colour page."""
    return total > 0 and chromatic > COLOUR_PAGE_FRACTION * total


def is_colour_rgb(red: float, green: float, blue: float, scale: float = 255.0) -> bool:
    """Whether one colour value (components from 0 to *scale*) counts as chromatic."""
    spread = (max(red, green, blue) - min(red, green, blue)) * 255.0 / scale
    return spread > CHROMA_THRESHOLD


def image_is_colour(image: Image.Image) -> bool:
    """Whether a whole image (a JPEG, a decoded raster) is colour by the page rule."""
    if image.mode in ("1", "L", "LA", "I", "I;16", "F"):
        return False
    if image.mode not in ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LAB"):
        image = image.convert("RGB")
    return is_colour(chromatic_pixels(image.convert("RGB")), image.width * image.height)
