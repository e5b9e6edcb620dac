"""PDF analysis: a real parser for pages and requests, Ghostscript's rendering for colour."""

from __future__ import annotations

import pikepdf
import pytest
from pikepdf import Name

from pcnet.spool import Limits, analyse

from ._support import LETTER, filled_box, grey_text, raw_pdf, red_text, write_pdf


def test_pages_inside_compressed_object_streams_are_counted(tmp_path):
    path = write_pdf(
        tmp_path / "objstm.pdf",
        [grey_text(), red_text(), grey_text(), grey_text(), red_text()],
        object_streams=True,
    )
    raw = path.read_bytes()
    # The page objects really are inside object streams: no byte search could find them.
    assert b"/ObjStm" in raw
    assert b"/Type /Page" not in raw and b"/Type/Page" not in raw

    result = analyse(path)
    assert result.format == "pdf"
    assert result.pages == 5
    assert result.colour_page_numbers == (2, 5)
    assert not result.fallback


def test_viewer_preferences_give_duplex_and_copies(tmp_path):
    path = write_pdf(
        tmp_path / "prefs.pdf",
        [grey_text(), grey_text()],
        size=LETTER,
        viewer_preferences={"/Duplex": Name.DuplexFlipLongEdge, "/NumCopies": 3},
    )
    result = analyse(path)
    assert (result.pages, result.duplex, result.copies, result.paper_size) == (2, True, 3, "Letter")


def test_simplex_viewer_preference_is_not_duplex(tmp_path):
    path = write_pdf(
        tmp_path / "simplex.pdf", [grey_text()], viewer_preferences={"/Duplex": Name.Simplex}
    )
    assert analyse(path).duplex is False


@pytest.mark.parametrize(
    "content, colour",
    [
        (red_text(10), True),  # one short word of coloured text
        (red_text(8, b"link").replace(b"1 0 0 rg", b"0 0 1 rg"), True),  # a small blue word
        (b"1 0 0 RG 0.5 w 72 600 m 214 600 l S", True),  # a thin red rule
        (filled_box(1, 0.85, 0.85), True),  # a pale pink box (chroma 38 of 255)
        (filled_box(0.5, 0.48, 0.5), False),  # a near-neutral box (chroma 5 of 255)
        (grey_text(), False),
        (filled_box(0.2, 0.2, 0.2), False),
        (b"", False),  # a blank page is a grey page, and still a page
    ],
)
def test_colour_threshold_on_rendered_pages(tmp_path, content, colour):
    result = analyse(write_pdf(tmp_path / "page.pdf", [content]))
    assert result.pages == 1
    assert result.colour_pages == int(colour)


def test_custom_page_size_is_named_in_millimetres(tmp_path):
    path = write_pdf(tmp_path / "custom.pdf", [grey_text()], size=(283.46, 425.2))  # 100 x 150 mm
    assert analyse(path).paper_size == "100x150mm"


def test_landscape_a4_is_still_a4(tmp_path):
    assert (
        analyse(write_pdf(tmp_path / "landscape.pdf", [grey_text()], size=(842, 595))).paper_size
        == "A4"
    )


def test_password_protected_pdf_falls_back(tmp_path):
    plain = write_pdf(tmp_path / "plain.pdf", [grey_text(), grey_text()])
    locked = tmp_path / "locked.pdf"
    with pikepdf.open(plain) as pdf:
        pdf.save(locked, encryption=pikepdf.Encryption(user="secret", owner="owner"))
    result = analyse(locked)
    assert result.fallback
    assert "password" in result.error
    assert (result.pages, result.colour_pages) == (1, 1)


def test_owner_password_only_pdf_is_analysed(tmp_path):
    """A PDF that opens without a password (only printing restrictions) is analysed normally."""
    plain = write_pdf(tmp_path / "plain.pdf", [grey_text(), red_text()])
    restricted = tmp_path / "restricted.pdf"
    with pikepdf.open(plain) as pdf:
        pdf.save(restricted, encryption=pikepdf.Encryption(user="", owner="owner"))
    result = analyse(restricted)
    assert not result.fallback
    assert (result.pages, result.colour_page_numbers) == (2, (2,))


def test_pdf_without_pages_falls_back(tmp_path):
    path = tmp_path / "empty.pdf"
    pikepdf.Pdf.new().save(path)
    result = analyse(path)
    assert result.fallback and "no pages" in result.error
    assert (result.pages, result.colour_pages) == (1, 1)


def test_garbage_after_pdf_header_falls_back(tmp_path):
    path = tmp_path / "corrupt.pdf"
    path.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 40)
    result = analyse(path)
    assert result.format == "pdf"
    assert result.fallback and result.error
    assert result.pages >= 1 and result.colour_pages == result.pages


def test_truncated_pdf_never_counts_zero_pages(tmp_path):
    whole = write_pdf(tmp_path / "whole.pdf", [grey_text()] * 6).read_bytes()
    for cut in (len(whole) // 4, len(whole) // 2, len(whole) - 40):
        path = tmp_path / f"cut{cut}.pdf"
        path.write_bytes(whole[:cut])
        result = analyse(path)
        assert result.pages >= 1
        # Either qpdf repairs the file, as CUPS's own PDF filters would, and the pages it
        # recovers (the truncated ones are lost) are rendered and judged, or the documented
        # fallback applies.
        if not result.fallback:
            assert 1 <= result.pages <= 6 and result.colour_pages == 0
        else:
            assert result.colour_pages == result.pages


# -- damaged PDFs: counted leniently, not as one page -------------------------------------

FOUR_PAGES = [filled_box(1, 0, 0), grey_text(), filled_box(0, 0, 1), grey_text()]


def test_page_tree_root_without_kids_is_counted_from_its_page_objects(tmp_path):
    """py-pdf's unreadablemetadata.pdf: 4 pages, a /Pages root without /Kids; qpdf refuses it
    and pcnet charged it as 1 colour page. Its pages are found and rendered from a repaired
    copy, so their colour is judged as usual."""
    path = tmp_path / "unreadablemetadata.pdf"
    path.write_bytes(raw_pdf(FOUR_PAGES, kids=False))
    with pytest.raises(pikepdf.PdfError):
        pikepdf.open(path)  # the premise: qpdf cannot read it
    result = analyse(path)
    assert (result.format, result.pages, result.colour_page_numbers) == ("pdf", 4, (1, 3))
    assert result.paper_size == "A4"
    assert result.fallback and "4 pages found by a scan of the page objects" in result.error


def test_inherited_media_box_of_a_broken_tree_is_kept(tmp_path):
    path = tmp_path / "broken.pdf"
    path.write_bytes(raw_pdf(FOUR_PAGES[:2], kids=False, root_extra=b"/MediaBox [0 0 612 792]",
                             page_extra=b""))
    result = analyse(path)
    assert (result.pages, result.colour_page_numbers, result.paper_size) == (2, (1,), "Letter")


def test_page_tree_that_counts_no_pages_over_real_page_objects(tmp_path):
    path = tmp_path / "zero.pdf"
    path.write_bytes(raw_pdf(FOUR_PAGES[:3], kids=False, count=0))
    result = analyse(path)
    assert (result.pages, result.colour_page_numbers) == (3, (1, 3))


def test_a_pdf_pypdf_cannot_read_is_counted_by_a_byte_scan(tmp_path, monkeypatch):
    """The last resort: /Type /Page objects counted in the bytes, every page colour unless
    Ghostscript renders them from the original."""
    import pypdf

    def unreadable(*args, **kwargs):
        raise pypdf.errors.PdfReadError("cannot read")

    monkeypatch.setattr(pypdf, "PdfReader", unreadable)
    path = tmp_path / "broken.pdf"
    path.write_bytes(raw_pdf(FOUR_PAGES, kids=False))
    result = analyse(path)
    assert (result.pages, result.colour_pages) == (4, 4)
    assert "byte scan" in result.error


def test_a_damaged_pdf_over_the_page_maximum_counts_as_over(tmp_path):
    path = tmp_path / "broken.pdf"
    path.write_bytes(raw_pdf([grey_text()] * 12, kids=False))
    result = analyse(path, limits=Limits(max_pages=10))
    assert (result.pages, result.limits_hit) == (11, ("pages",))
