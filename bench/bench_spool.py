"""Benchmark: spool file analysis speed per format, beside Ghostscript counting the same files.

Run from the repository root::

    .venv/bin/python bench/bench_spool.py [--seconds 3] [--max-rounds 200]

For each format found in the shared test data (plus PCL XL made from it with Ghostscript's
``pxlcolor`` driver, since the test data has none), every file of that format is analysed
over and over until ``--seconds`` have passed or ``--max-rounds`` rounds are done, and the
pages analysed per second are printed. In the same run Ghostscript counts the pages of the same
PDF files (``runpdfbegin pdfpagecount``, parsing only) and PostScript files (the ``nullpage``
device with an ``EndPage`` counter, running every page without drawing), the cheapest ways to
learn a page count with it; the ratio shows what the full analysis (page count, requests, and
rendering every page for colour) costs on top of that. A third column shows Ghostscript alone
rendering the files as the analysis does, i.e. how much of pcnet's time is Ghostscript's.
Ghostscript cannot read the other formats, so they have no baseline.

Every analysis runs Ghostscript in the sandbox (``--sandbox``: ``auto``, ``bwrap`` or ``user``;
docs/spool-analysis.md "Sandbox and limits"); the "gs" columns run it bare. A second table shows
what the sandbox costs per helper process: starting ``/usr/bin/true`` bare, in the user sandbox
(prlimit + setpriv) and under bubblewrap (prlimit + bwrap), median over ``--starts`` starts.

This is a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pcnet.spool import Limits, analyse  # noqa: E402
from pcnet.spool._colour import RENDER_DPI  # noqa: E402
from pcnet.spool._sandbox import Sandbox, bwrap_problem  # noqa: E402

TESTDATA = ROOT.parent / "shared" / "testdata" / "spool"
SKIP = ("LICENSE", "NOTICE", "COPYING")


def timed_loop(action, pages_per_round: int, seconds: float, max_rounds: int) -> tuple[float, int]:
    """Run *action* until *seconds* pass or *max_rounds* are done; return (pages/s, rounds)."""
    rounds = 0
    started = time.perf_counter()
    while True:
        action()
        rounds += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds or rounds >= max_rounds:
            return pages_per_round * rounds / elapsed, rounds


def ghostscript_pdf_pages(path: Path) -> int:
    output = subprocess.run(
        ["gs", "-q", "-dNODISPLAY", "-dNOSAFER", "-c",
         f"({path}) (r) file runpdfbegin pdfpagecount = quit"],
        capture_output=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    return int(output.split()[-1])


# Print a line per page from EndPage: the nullpage device runs every page but draws nothing.
_COUNT_PAGES = "<< /EndPage { exch pop 2 ne dup { (PAGE\\n) print } if } >> setpagedevice"


def ghostscript_ps_pages(path: Path) -> int:
    output = subprocess.run(
        ["gs", "-q", "-dSAFER", "-dBATCH", "-dNOPAUSE", "-sDEVICE=nullpage",
         "-c", _COUNT_PAGES, "-f", str(path)],
        capture_output=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    return output.count(b"PAGE\n")


def ghostscript_render(path: Path) -> None:
    """Ghostscript alone, rendering as the analysis does (to show pcnet's own overhead)."""
    subprocess.run(
        ["gs", "-q", "-dSAFER", "-dBATCH", "-dNOPAUSE", "-sDEVICE=ppmraw", f"-r{RENDER_DPI}",
         "-dTextAlphaBits=4", "-dGraphicsAlphaBits=4", "-sOutputFile=/dev/null", str(path)],
        capture_output=True, check=True, timeout=120,
    )  # fmt: skip


BASELINES = {"pdf": ghostscript_pdf_pages, "postscript": ghostscript_ps_pages}


def make_pclxl(directory: Path) -> list[Path]:
    made = []
    for source in ("colors.pdf", "document-a4.pdf", "testfile.pdf"):
        target = directory / (Path(source).stem + ".pxl")
        subprocess.run(
            ["gs", "-q", "-dSAFER", "-dBATCH", "-dNOPAUSE", "-sDEVICE=pxlcolor", "-r300",
             f"-sOutputFile={target}", str(TESTDATA / source)],
            check=True, timeout=120,
        )  # fmt: skip
        made.append(target)
    return made


def start_cost(limits: Limits | None, starts: int) -> float:
    """Median milliseconds to start and reap ``/usr/bin/true`` (bare when *limits* is None)."""
    times = []
    for _ in range(starts):
        started = time.perf_counter()
        if limits is None:
            subprocess.run(["/usr/bin/true"], check=True)
        else:
            with Sandbox(limits) as sandbox:
                process = sandbox.start(["/usr/bin/true"])
                process.stdout.close()
                process.stderr.close()
                process.wait()
        times.append(time.perf_counter() - started)
    times.sort()
    return 1000 * times[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument(
        "--max-rounds", type=int, default=200, help="bound on rounds per measurement"
    )
    parser.add_argument("--sandbox", default="auto", choices=("auto", "bwrap", "user"))
    parser.add_argument("--starts", type=int, default=50, help="helper starts per sandbox")
    options = parser.parse_args()
    limits = Limits(sandbox=options.sandbox)

    with tempfile.TemporaryDirectory(prefix="bench-spool-") as scratch:
        files = [p for p in sorted(TESTDATA.iterdir()) if not p.name.startswith(SKIP)]
        files += make_pclxl(Path(scratch))

        by_format: dict[str, list[Path]] = defaultdict(list)
        pages: dict[Path, int] = {}
        for path in files:
            result = analyse(path, limits=limits)
            by_format[result.format].append(path)
            pages[path] = result.pages

        header = (
            f"{'format':<11} {'files':>5} {'pages':>5} {'rounds':>6} {'pcnet p/s':>10} "
            f"{'gs count p/s':>12} {'pcnet/count':>11} {'gs render p/s':>13}"
        )
        print(header)
        print("-" * len(header))
        for format_, paths in sorted(by_format.items()):
            total = sum(pages[p] for p in paths)

            def run_pcnet(paths=paths):
                for path in paths:
                    analyse(path, limits=limits)

            rate, rounds = timed_loop(run_pcnet, total, options.seconds, options.max_rounds)
            baseline = BASELINES.get(format_)
            if baseline is not None:
                counted = sum(baseline(p) for p in paths)
                assert counted == total, f"Ghostscript counts {counted} pages, pcnet {total}"

                def run_gs(paths=paths, baseline=baseline):
                    for path in paths:
                        baseline(path)

                def run_render(paths=paths):
                    for path in paths:
                        ghostscript_render(path)

                gs_rate, _ = timed_loop(run_gs, total, options.seconds, options.max_rounds)
                render_rate, _ = timed_loop(run_render, total, options.seconds, options.max_rounds)
                gs_text = f"{gs_rate:12.1f} {rate / gs_rate:11.2f} {render_rate:13.1f}"
            else:
                gs_text = f"{'-':>12} {'-':>11} {'-':>13}"
            print(f"{format_:<11} {len(paths):>5} {total:>5} {rounds:>6} {rate:10.1f} {gs_text}")

    print()
    print(f"{'helper start':<26} {'median ms':>9}")
    print("-" * 36)
    print(f"{'bare (no sandbox)':<26} {start_cost(None, options.starts):9.2f}")
    print(f"{'user sandbox':<26} {start_cost(Limits(sandbox='user'), options.starts):9.2f}")
    problem = bwrap_problem()
    if problem is None:
        print(f"{'bubblewrap sandbox':<26} {start_cost(Limits(sandbox='bwrap'), options.starts):9.2f}")
    else:
        print(f"{'bubblewrap sandbox':<26} {'-':>9}  ({problem})")


if __name__ == "__main__":
    main()
