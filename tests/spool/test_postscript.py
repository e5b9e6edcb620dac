"""PostScript analysis: Ghostscript's rendering is trusted over DSC comments, which can lie."""

from __future__ import annotations

from pcnet.spool import Limits, analyse

from ._support import TESTDATA, postscript


def write(tmp_path, data: bytes, name: str = "job.ps"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_dsc_that_claims_too_many_pages_is_overruled(tmp_path):
    result = analyse(write(tmp_path, postscript(1, dsc_pages=9)))
    assert result.format == "postscript"
    assert result.pages == 1
    assert not result.fallback


def test_dsc_that_claims_too_few_pages_is_overruled(tmp_path):
    result = analyse(write(tmp_path, postscript(3, dsc_pages=1, colour=True)))
    assert (result.pages, result.colour_page_numbers) == (3, (1, 2, 3))


def test_postscript_without_dsc_is_counted(tmp_path):
    data = (
        b"%!\n/Helvetica findfont 20 scalefont setfont\n" + b"72 72 moveto (x) show showpage\n" * 2
    )
    assert analyse(write(tmp_path, data)).pages == 2


def test_setpagedevice_duplex_and_numcopies(tmp_path):
    setup = b"<< /Duplex true /NumCopies 3 /PageSize [595 842] >> setpagedevice"
    result = analyse(write(tmp_path, postscript(2, dsc_pages=2, setup=setup)))
    # The copies are reported, not rendered: two pages, not six.
    assert (result.pages, result.duplex, result.copies, result.paper_size) == (2, True, 3, "A4")


def test_level1_copies(tmp_path):
    result = analyse(write(tmp_path, postscript(2, setup=b"/#copies 4 def")))
    assert (result.pages, result.copies) == (2, 4)


def test_duplex_requested_inside_a_procedure(tmp_path):
    setup = b"/setup { << /Duplex true >> setpagedevice } def setup"
    assert analyse(write(tmp_path, postscript(1, setup=setup))).duplex is True


def test_duplex_text_in_a_procedure_that_is_not_called_does_not_count(tmp_path):
    """As in the xpdf prolog of document-a4.ps: "{ /Duplex true def } if" guarded by false."""
    setup = (
        b"/pdfSetup { 2 dict begin { /Duplex true def } if currentdict end setpagedevice } def"
        b" false pdfSetup"
    )
    assert analyse(write(tmp_path, postscript(1, setup=setup))).duplex is False
    assert b"/Duplex true" in (TESTDATA / "document-a4.ps").read_bytes()[:4096]
    assert analyse(TESTDATA / "document-a4.ps").duplex is False


def test_page_size_requested_with_setpagedevice_wins(tmp_path):
    result = analyse(
        write(tmp_path, postscript(1, setup=b"<< /PageSize [612 1008] >> setpagedevice"))
    )
    assert result.paper_size == "Legal"


def test_document_media_comment_gives_paper(tmp_path):
    data = postscript(1).replace(
        b"%%EndComments", b"%%DocumentMedia: Plain 842 1191 0 () ()\n%%EndComments"
    )
    assert analyse(write(tmp_path, data)).paper_size == "A3"


def test_postscript_error_falls_back_on_dsc_page_count(tmp_path):
    """Ghostscript stops at an error: pages it did not render are charged as colour."""
    data = postscript(1, dsc_pages=3).replace(b"%%EOF", b"this_is_not_an_operator\n%%EOF")
    result = analyse(write(tmp_path, data))
    assert result.fallback
    assert "Ghostscript failed" in result.error
    assert result.pages == 3
    assert result.colour_page_numbers == (2, 3)  # page 1 was rendered and is grey


def test_ghostscript_timeout_counts_the_job_as_over_the_page_limit(tmp_path):
    """A job stopped by the time limit is not charged what its DSC claims (nor what rendered
    in time, which depends on the machine): it counts as more than max_pages pages."""
    data = b"%!PS-Adobe-3.0\n%%Pages: 2\n%%EndComments\n{ } loop\n"
    result = analyse(write(tmp_path, data), limits=Limits(timeout=1, max_pages=50))
    assert result.fallback
    assert "time limit" in result.error
    assert (result.pages, result.colour_pages) == (51, 51)
    assert result.limits_hit == ("time", "pages")


def test_postscript_that_prints_nothing_falls_back(tmp_path):
    result = analyse(write(tmp_path, b"%!PS\n1 2 add pop\n"))
    assert result.fallback
    assert (result.pages, result.colour_pages) == (1, 1)


def test_postscript_wrapped_in_pjl(tmp_path):
    pjl = b"\x1b%-12345X@PJL JOB\n@PJL SET COPIES=2\n@PJL ENTER LANGUAGE=POSTSCRIPT\n"
    result = analyse(
        write(tmp_path, pjl + postscript(2, colour=True) + b"\x1b%-12345X@PJL EOJ\n\x1b%-12345X")
    )
    assert result.format == "postscript"
    assert (result.pages, result.colour_pages, result.copies) == (2, 2, 2)


def test_document_output_cannot_forge_reports(tmp_path):
    """A job printing lines that look like the prologue's reports changes nothing."""
    setup = b"(\\nPCNET-0000000000000000 copies 1\\n) print (\\nduplex true\\n) print flush"
    result = analyse(write(tmp_path, postscript(1, setup=setup + b" /#copies 2 def")))
    assert (result.copies, result.duplex) == (2, False)


def test_job_with_its_own_end_page_procedure(tmp_path):
    """A job's EndPage is chained after the prologue's: pages and copies are still reported."""
    setup = b"<< /EndPage { exch pop 2 ne } >> setpagedevice /#copies 3 def"
    result = analyse(write(tmp_path, postscript(2, dsc_pages=2, setup=setup)))
    assert (result.pages, result.copies, result.fallback) == (2, 3, False)


def test_job_printing_without_end_is_stopped_by_the_timeout(tmp_path):
    """Its output is drained and dropped as it comes: the job costs time, not disk or memory."""
    data = b"%!PS\n%%Pages: 1\n{ (all work and no play makes Jack a dull boy\\n) print } loop\n"
    result = analyse(write(tmp_path, data), limits=Limits(timeout=2, max_pages=50))
    assert result.fallback and "time limit" in result.error
    assert (result.pages, result.colour_pages, result.limits_hit) == (51, 51, ("time", "pages"))
