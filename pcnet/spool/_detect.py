"""Recognise a spool file's format from its first bytes, and read a PJL job header.

File names and CUPS content types are not trusted: a job's format is decided from its own
bytes (magic numbers, PostScript's ``%!``, PCL's escape character, PWG's sync word). Jobs
from Windows drivers often start with a PJL header (``ESC%-12345X@PJL ...``) that names the
language that follows and sets job defaults (copies, duplex, paper, grey rendering); the header
is parsed here and the body's format comes from ``ENTER LANGUAGE`` or, failing that, sniffing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import _paper

UEL = b"\x1b%-12345X"

_PJL_LANGUAGES = {
    "PCL": "pcl5",
    "PCLXL": "pclxl",
    "PCL6": "pclxl",
    "POSTSCRIPT": "postscript",
    "PDF": "pdf",
}
_PJL_SET = re.compile(rb"@PJL\s+(?:SET|DEFAULT)\s+([A-Z0-9_]+)\s*=\s*([^\r\n]*)", re.IGNORECASE)
_PJL_ENTER = re.compile(rb"@PJL\s+ENTER\s+LANGUAGE\s*=\s*([A-Z0-9]+)", re.IGNORECASE)

# Bytes that may appear in plain text: printable ASCII, tab, LF, VT, FF, CR, backspace, and
# anything >= 0x80 (UTF-8 or an 8-bit code page).
_TEXT_CONTROL = bytes([8, 9, 10, 11, 12, 13, 26, 27])
_BINARY = bytes(b for b in range(32) if b not in _TEXT_CONTROL) + b"\x7f"


@dataclass(frozen=True)
class PjlHeader:
    """Job settings from a PJL header; ``None`` where the header is silent."""

    body_offset: int = 0
    language: str | None = None
    copies: int | None = None
    duplex: bool | None = None
    paper: str | None = None
    grey: bool = False

    @property
    def present(self) -> bool:
        return self.body_offset > 0


NO_PJL = PjlHeader()


def read_pjl(data: bytes) -> PjlHeader:
    """Parse a PJL header at the start of *data* (``NO_PJL`` when there is none)."""
    if not (data.startswith(UEL) or data[:8].upper().startswith(b"@PJL")):
        return NO_PJL
    position = len(UEL) if data.startswith(UEL) else 0
    settings: dict[str, str] = {}
    language = None
    while position < len(data):
        # PJL lines may be separated by CR/LF and stray whitespace.
        while position < len(data) and data[position : position + 1] in (b"\r", b"\n", b" ", b"\t"):
            position += 1
        if data[position : position + 4].upper() != b"@PJL":
            if data.startswith(UEL, position):
                position += len(UEL)
                continue
            break
        end = data.find(b"\n", position)
        if end < 0:
            end = len(data)
        line = data[position:end]
        position = end + 1
        enter = _PJL_ENTER.match(line)
        if enter:
            language = _PJL_LANGUAGES.get(enter.group(1).decode("ascii", "replace").upper())
            break
        setting = _PJL_SET.match(line)
        if setting:
            key = setting.group(1).decode("ascii", "replace").upper()
            value = setting.group(2).decode("latin-1").strip().strip('"').upper()
            settings[key] = value
    return PjlHeader(
        body_offset=min(position, len(data)),
        language=language,
        copies=_pjl_int(settings.get("COPIES")) or _pjl_int(settings.get("QTY")),
        duplex=_pjl_duplex(settings.get("DUPLEX")),
        paper=_paper.name_from_keyword(settings["PAPER"]) if "PAPER" in settings else None,
        grey=settings.get("RENDERMODE") in ("GRAYSCALE", "GREYSCALE")
        or settings.get("PLANESINUSE") == "1",
    )


def _pjl_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        return None
    return number if number >= 1 else None


def _pjl_duplex(value: str | None) -> bool | None:
    if value is None:
        return None
    return value == "ON"


def sniff(head: bytes) -> str:
    """The format of a file that starts with *head* (one of the analysis formats)."""
    if not head:
        return "unknown"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    stripped = head.lstrip(b"\x04")  # a leading Ctrl-D ends a previous PostScript job
    if stripped.startswith(b"\xef\xbb\xbf"):
        stripped = stripped[3:]
    if b"%PDF-" in head[:1024]:
        return "pdf"
    if stripped.startswith(b"%!") or head.startswith(b"\xc5\xd0\xd3\xc6"):
        return "postscript"
    if head[:4] in (b"RaS2", b"2SaR", b"RaS3", b"3SaR", b"RaSt", b"tSaR"):
        return "pwg-raster"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if re.match(rb"[()'] HP-PCL XL", head):
        return "pclxl"
    if (
        head.startswith(b"\x1b")
        and len(head) > 1
        and (head[1:2] == b"E" or 0x21 <= head[1] <= 0x2F)
    ):
        return "pcl5"
    if _looks_like_text(head):
        return "text"
    return "unknown"


def _looks_like_text(head: bytes) -> bool:
    sample = head[:65536]
    if b"\x00" in sample:
        return False
    binary = len(sample) - len(sample.translate(None, _BINARY))
    return binary <= len(sample) // 100
