"""``pcnet analyse FILE...``: show administrators what pcnet would charge for spool files.

One JSON object per file and line (``{"file": ..., <the analysis>}``), so the output can be read
by eye or piped to ``jq``. The exit status is 0 when every file was analysed and 1 when any file
fell back (unreadable, unknown format, Ghostscript failure), so scripts can spot bad files.
"""

from __future__ import annotations

import json
from typing import TextIO


def analyse_command(paths: list[str], out: TextIO, default_paper: str | None = None) -> int:
    """Analyse each of *paths*, write one JSON line per file to *out*; return the exit status.
    *default_paper* is the paper of a file that states none (default: pcnet's, A4), as a Print
    Provider's ``[analysis] paper_size``."""
    from . import analyse  # the package imports this module; import at call time

    status = 0
    for path in paths:
        result = analyse(path) if default_paper is None else analyse(path, default_paper=default_paper)
        record = {"file": path, **result.to_json()}
        out.write(json.dumps(record, sort_keys=False) + "\n")
        if result.fallback:
            status = 1
    return status
