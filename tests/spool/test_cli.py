"""The administrators' command: one JSON object per file, exit status 1 if any file failed."""

from __future__ import annotations

import io
import json

from pcnet.spool import analyse_command

from ._support import TESTDATA


def test_one_json_object_per_file_and_success_status():
    out = io.StringIO()
    paths = [str(TESTDATA / "testfile.pcl"), str(TESTDATA / "onepage-letter.pdf")]
    status = analyse_command(paths, out)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert status == 0
    assert [r["file"] for r in records] == paths
    assert records[0] == {
        "file": paths[0],
        "format": "pcl5",
        "pages": 1,
        "colour_pages": 0,
        "colour_page_numbers": [],
        "duplex": False,
        "copies": 1,
        "paper_size": "A4",   # it states none: pcnet's one default paper size
        "error": None,
        "fallback": False,
        "limits_hit": [],
    }
    assert (records[1]["format"], records[1]["colour_page_numbers"], records[1]["paper_size"]) == (
        "pdf", [1], "Letter",
    )  # fmt: skip


def test_the_paper_of_a_file_that_states_none_can_be_given_as_a_provider_would():
    out = io.StringIO()
    paths = [str(TESTDATA / "testfile.pcl"), str(TESTDATA / "onepage-a4.pdf")]
    assert analyse_command(paths, out, default_paper="Letter") == 0
    pcl, pdf = (json.loads(line) for line in out.getvalue().splitlines())
    assert pcl["paper_size"] == "Letter" and pdf["paper_size"] == "A4"   # a PDF says its own


def test_a_failed_file_is_reported_and_sets_the_exit_status(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x00\x01\x02\x03" * 100)
    out = io.StringIO()
    status = analyse_command([str(bad), str(TESTDATA / "testfile.txt")], out)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert status == 1
    assert first["file"] == str(bad) and first["fallback"] is True and first["error"]
    assert (first["pages"], first["colour_pages"]) == (1, 1)
    assert second["fallback"] is False and second["format"] == "text"


def test_no_files_is_success():
    out = io.StringIO()
    assert analyse_command([], out) == 0
    assert out.getvalue() == ""
