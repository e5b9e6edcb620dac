"""Paper size names for page dimensions found in spool files.

Spool formats state a page's size in different units (PostScript points, PWG raster points,
PCL size codes, PCL XL enumerations or custom sizes). Cost models are keyed by a paper name,
so every format is reduced here to one name: a well-known size when the page matches one within
a tolerance, otherwise ``"<W>x<H>mm"``. Orientation is ignored (a landscape A4 page is still a
sheet of A4), so the short side always comes first.
"""

from __future__ import annotations

MM_PER_POINT = 25.4 / 72

# Short side, long side in PostScript points (1/72 inch), as PWG 5101.1 gives them.
STANDARD_SIZES: dict[str, tuple[float, float]] = {
    "A3": (841.89, 1190.55),
    "A4": (595.28, 841.89),
    "A5": (419.53, 595.28),
    "A6": (297.64, 419.53),
    "B4": (708.66, 1000.63),
    "B5": (498.9, 708.66),
    "Letter": (612.0, 792.0),
    "Legal": (612.0, 1008.0),
    "Executive": (522.0, 756.0),
    "Tabloid": (792.0, 1224.0),
    "Statement": (396.0, 612.0),
    "Env10": (296.99, 684.0),
    "EnvDL": (311.81, 623.62),
    "EnvC5": (459.21, 649.13),
    "EnvMonarch": (279.0, 540.0),
}

# Printers' own size tables are rounded (A4 is 595 x 842 in most PostScript, 2480 x 3507 dots
# at 300 dpi in PCL XL); 2 mm absorbs that and still tells A4 (210 mm) from Letter (216 mm).
TOLERANCE_POINTS = 2.0 / MM_PER_POINT


def paper_name(width: float, height: float) -> str:
    """Name the paper for a page of *width* x *height* points."""
    short, long_ = sorted((abs(float(width)), abs(float(height))))
    for name, (std_short, std_long) in STANDARD_SIZES.items():
        if abs(short - std_short) <= TOLERANCE_POINTS and abs(long_ - std_long) <= TOLERANCE_POINTS:
            return name
    return f"{round(short * MM_PER_POINT)}x{round(long_ * MM_PER_POINT)}mm"


def is_standard(width: float, height: float) -> bool:
    """True when *width* x *height* points is one of the named sizes."""
    return not paper_name(width, height).endswith("mm")


def paper_points(name: str) -> tuple[float, float]:
    """Portrait (width, height) in points of a named size (KeyError for an unknown name)."""
    return STANDARD_SIZES[name]


# Names printers' job languages use (PJL PAPER=, PCL XL media names), upper-cased.
_KEYWORDS = {
    "LETTER": "Letter",
    "LEGAL": "Legal",
    "EXECUTIVE": "Executive",
    "EXEC": "Executive",
    "LEDGER": "Tabloid",
    "TABLOID": "Tabloid",
    "11X17": "Tabloid",
    "STATEMENT": "Statement",
    "A3": "A3",
    "A4": "A4",
    "A5": "A5",
    "A6": "A6",
    "B4": "B4",
    "B5": "B5",
    "COM10": "Env10",
    "MONARCH": "EnvMonarch",
    "DL": "EnvDL",
    "C5": "EnvC5",
}


def name_from_keyword(keyword: str) -> str | None:
    """The paper name for a job language's media keyword (``A4``, ``LETTER``...), if known."""
    return _KEYWORDS.get(keyword.strip().upper().replace("PAPER", "").replace("ENVELOPE", ""))
