"""Files that cannot be analysed never count as zero pages and never raise."""

from __future__ import annotations

import gzip

import pytest

from pcnet.spool import FALLBACK_PAGES, _ghostscript, analyse

from ._support import TESTDATA, grey_text, postscript, write_pdf


def assert_documented_fallback(result, pages=FALLBACK_PAGES):
    assert result.fallback
    assert result.error
    assert result.pages == pages
    assert result.colour_pages == pages  # charged as colour pages
    assert result.copies == 1


def test_empty_file(tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    result = analyse(path)
    assert_documented_fallback(result)
    assert result.format == "unknown" and "empty" in result.error


def test_unknown_binary_format(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(bytes(range(256)) * 16)  # NULs and control bytes: not text
    result = analyse(path)
    assert_documented_fallback(result)
    assert result.format == "unknown" and "unrecognised" in result.error


def test_missing_file(tmp_path):
    result = analyse(tmp_path / "does-not-exist.pdf")
    assert_documented_fallback(result)
    assert "cannot read" in result.error


def test_directory_instead_of_a_file(tmp_path):
    assert_documented_fallback(analyse(tmp_path))


def test_missing_ghostscript(tmp_path, monkeypatch):
    monkeypatch.setattr(_ghostscript.shutil, "which", lambda name: None)
    result = analyse(write_pdf(tmp_path / "job.pdf", [grey_text()]))
    assert_documented_fallback(result)
    assert "Ghostscript" in result.error


def _cut_short(monkeypatch, *, keep: int, error: str, limit: str | None):
    """Make every rendering stop after *keep* pages with *error* (and *limit*, if any)."""
    real_render = _ghostscript.render

    def short_render(path, **options):
        rendering = real_render(path, **options)
        rendering.page_colours = rendering.page_colours[:keep]
        rendering.error, rendering.limit = error, limit
        return rendering

    monkeypatch.setattr(_ghostscript, "render", short_render)


def test_ghostscript_failing_mid_document_keeps_rendered_pages(tmp_path, monkeypatch):
    """A rendering cut short by an error (any machine fails the same way): rendered pages keep
    their verdict, the others count as colour."""
    _cut_short(monkeypatch, keep=2, error="Ghostscript failed (exit status 1): /ioerror", limit=None)
    result = analyse(write_pdf(tmp_path / "job.pdf", [grey_text()] * 5))
    assert result.fallback and "failed" in result.error
    assert (result.pages, result.colour_page_numbers) == (5, (3, 4, 5))


@pytest.mark.parametrize("limit", ["time", "cpu", "memory", "output"])
def test_pdf_rendering_stopped_by_a_machine_limit_is_all_colour(tmp_path, monkeypatch, limit):
    """How far a rendering got before a limit depends on the machine: no page keeps a verdict,
    every page of the parser's (exact) count is colour."""
    _cut_short(monkeypatch, keep=2, error=f"Ghostscript stopped at the {limit} limit", limit=limit)
    result = analyse(write_pdf(tmp_path / "job.pdf", [grey_text()] * 5))
    assert result.fallback and "every page counted as colour" in result.error
    assert (result.pages, result.colour_page_numbers) == (5, (1, 2, 3, 4, 5))
    assert result.limits_hit == (limit,)


def test_gzip_compressed_postscript_and_pdf(tmp_path):
    ps = tmp_path / "job.ps.gz"
    ps.write_bytes(gzip.compress(postscript(3, colour=True)))
    pdf = tmp_path / "job.pdf.gz"
    pdf.write_bytes(gzip.compress((TESTDATA / "document-a4.pdf").read_bytes()))
    result = analyse(ps)
    assert (result.format, result.pages, result.colour_pages) == ("postscript", 3, 3)
    result = analyse(pdf)
    assert (result.format, result.pages, result.colour_page_numbers) == ("pdf", 4, (1, 3))


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(b"%!PS\n" * 1000)[:60])
    assert_documented_fallback(analyse(path))


@pytest.mark.parametrize(
    "name",
    ["document-a4.pdf", "onepage-a4.ps", "testfile.pcl", "onepage-a4-300-black-1.pwg", "color.jpg"],
)
def test_every_truncation_of_a_real_file_gives_pages(tmp_path, name):
    """Cut a real spool file at several points: the analysis never raises or counts zero."""
    data = (TESTDATA / name).read_bytes()
    for fraction in (0.01, 0.3, 0.7, 0.99):
        path = tmp_path / f"cut-{fraction}-{name}"
        path.write_bytes(data[: max(1, int(len(data) * fraction))])
        result = analyse(path, timeout=30)
        assert result.pages >= 1
        assert 0 <= result.colour_pages <= result.pages
        if result.fallback:
            assert result.error
