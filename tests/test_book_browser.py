"""The built book as a reader's browser shows it, with no network: every chapter in headless Chromium.

Runs after the book is built (`make browser`, part of `make test`), not in the plain pytest pass:
it is marked `browser` and pytest deselects that mark unless asked. Without a browser it skips with a
message, unless MERU_NB_REQUIRE_BROWSER=1 (CI), where a missing browser is a failure.

The browser is the machine's Chromium ($CHROMIUM, else `chromium` on PATH) driven by Playwright
(tools/browser_check.py); Playwright never downloads one. The book read is $MERU_NB_BOOK_HTML, by default
_build/book/_build/html (`make book`); for `make book-fast`'s, set it to _build/book-fast/_build/html.

Every chapter is opened at desktop (1280 px) and phone (390 px) width, and a full-page screenshot of each
is written as a PNG to $MERU_NB_SHOTS, by default _build/shots/, named CHAPTER_WIDTH.png
(e.g. _build/shots/01_lorentz_390.png): open them to see what a reader sees.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import browser_check  # noqa: E402

pytestmark = pytest.mark.browser
HTML = Path(os.environ.get("MERU_NB_BOOK_HTML", ROOT / "_build" / "book" / "_build" / "html"))
SHOTS = Path(os.environ.get("MERU_NB_SHOTS", ROOT / "_build" / "shots"))
CHAPTERS = browser_check.chapters(HTML)
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def browser():
    exe = browser_check.find_browser()
    message = "no Chromium on this machine (apt install chromium, or set $CHROMIUM)"
    if exe is not None:
        try:
            import playwright  # noqa: F401
        except ImportError:
            exe, message = None, "Playwright is not installed (pip install -e '.[dev]')"
    if exe is None:
        if os.environ.get("MERU_NB_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    with browser_check.Browser(exe) as b:
        yield b


def test_the_book_is_built():
    assert CHAPTERS, f"no chapters under {HTML}/nbs: build the book first (make book)"
    assert (HTML / "_static" / "mathjax" / "tex-chtml.js").is_file(), "MathJax is not shipped with the site"


@pytest.mark.parametrize("width", [1280, 390], ids=["desktop", "phone"])
@pytest.mark.parametrize("page", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_reads_offline(browser, page, width):
    "Math typeset, no TeX left, images loaded, no directive, no console error or failed request, display formulas fit or scroll, code fits at 1280."
    report = browser_check.check_page(browser, page, width, shots=SHOTS)
    assert browser_check.problems(report) == []
    assert (SHOTS / f"{page.stem}_{width}.png").read_bytes()[:8] == PNG


# The checks must be able to fail. A small page that passes them all, and that page with one defect added:
# each defect must be reported, by the check meant for it and by no other (a missing image is also a failed
# load, a request for the network is both blocked and failed).
KINDS = {"math": "formulas not rendered", "tex": "TeX delimiters left", "image": "image not loaded:",
         "directive": "nbdev directive shown:", "console": "console:", "exception": "exception:",
         "request": "request failed:", "blocked": "blocked, not a file:", "wide": "code blocks wider than",
         "cut": "display formulas wider than", "unexecuted": "code cells shows an output"}
GOOD = """<!DOCTYPE html><html><head><meta name="viewport" content="width=device-width, initial-scale=1">
<style>main {{ max-width: 600px; }} pre {{ overflow: auto; }}</style>{head}</head><body><main>
<p>A formula, typeset: <span class="math notranslate nohighlight"><mjx-container>x^2</mjx-container></span>.</p>
<img src="ok.png" alt="a picture that is there">
<div class="cell"><div class="cell_input"><div class="highlight"><pre>x = 1</pre></div></div><div class="cell_output"><pre>1</pre></div></div>
{body}</main></body></html>"""
DEFECTS = {   # name: (what goes in <head>, what goes in <main>, the kinds of problem it must raise)
    "unrendered math": ("", '<p><span class="math notranslate nohighlight">y</span></p>', {"math"}),
    "unexecuted chapter": ('<script>addEventListener("DOMContentLoaded", () => '          # its one cell's output gone
                           'document.querySelectorAll(".cell_output").forEach(e => e.remove()))</script>', "", {"unexecuted"}),
    "TeX left": ("", r"<p>Left as typed: \(a + b\).</p>", {"tex"}),
    "missing image": ("", '<img src="missing.png">', {"image", "request"}),
    "directive": ("", '<div class="highlight"><pre>#| export\ndef f(): pass</pre></div>', {"directive"}),
    "console error": ("", '<script>console.error("a console error")</script>', {"console"}),
    "exception": ("", "<script>null.field</script>", {"exception"}),
    "network": ('<link rel="stylesheet" href="https://cdn.example.invalid/book.css">', "", {"blocked", "request"}),
    "wide code": ("", '<div class="highlight"><pre>y = 2  # ' + "far " * 120 + "</pre></div>", {"wide"}),
    "cut formula": ("", '<mjx-container display="true" style="display: block; overflow: hidden; white-space: nowrap">'
                    + "x + " * 200 + "y</mjx-container>", {"cut"}),
}

def kinds(found: list[str]) -> set[str]:
    "Which checks the problem lines come from; a line no check claims is returned as it is."
    return {next((k for k, start in KINDS.items() if start in line), line) for line in found}

def write_page(folder: Path, head: str = "", body: str = "") -> Path:
    page = folder / "nbs" / "page.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), "teal").save(page.parent / "ok.png")
    page.write_text(GOOD.format(head=head, body=body))
    return page


def test_the_good_page_passes(browser, tmp_path):
    "The control: without a defect, the small page has no problem, so what the defects raise is theirs."
    for width in (1280, 390):
        report = browser_check.check_page(browser, write_page(tmp_path), width)
        assert browser_check.problems(report) == []
        assert report["formulas"] == report["rendered"] == 1 and report["images"] == 1 and report["code_blocks"] == 1
        assert report["cells"] == report["cells_shown"] == 1


@pytest.mark.parametrize("defect", DEFECTS)
def test_each_check_can_fail(browser, tmp_path, defect):
    head, body, expected = DEFECTS[defect]
    report = browser_check.check_page(browser, write_page(tmp_path, head, body), 1280)
    assert kinds(browser_check.problems(report)) == expected


def test_wide_code_is_a_problem_only_at_desktop_width(browser, tmp_path):
    "A phone's column is narrow: code scrolls sideways there by design, and is counted but not reported."
    head, body, _ = DEFECTS["wide code"]
    report = browser_check.check_page(browser, write_page(tmp_path, head, body), 390)
    assert report["wide_code"] == 1 and browser_check.problems(report) == []


def test_screenshots_are_pngs_of_the_page(browser, tmp_path):
    "A screenshot is the whole page at the window's width, in a file an image viewer opens."
    body = "".join(f"<p>Paragraph {i}.</p>" for i in range(200))       # far taller than the 900 px window
    browser_check.check_page(browser, write_page(tmp_path, body=body), 390, shots=tmp_path / "shots")
    with Image.open(tmp_path / "shots" / "page_390.png") as shot:
        assert shot.format == "PNG" and shot.width == 390 and shot.height > 2000


def test_the_command_line_reports_a_problem(browser, tmp_path):
    "tools/browser_check.py prints a line per page and width, the problems under it; exit 1 on one, 2 with no book."
    tool = [sys.executable, str(ROOT / "tools" / "browser_check.py")]
    write_page(tmp_path / "book", body=DEFECTS["TeX left"][1])
    run = subprocess.run([*tool, str(tmp_path / "book"), "--widths", "1280,390"], capture_output=True, text=True)
    assert run.returncode == 1, run.stdout + run.stderr
    assert re.search(r"page\.html +1280px", run.stdout) and re.search(r"page\.html +390px", run.stdout)
    assert run.stdout.count("TeX delimiters left") == 2
    write_page(tmp_path / "clean")
    assert subprocess.run([*tool, str(tmp_path / "clean")], capture_output=True).returncode == 0
    run = subprocess.run([*tool, str(tmp_path / "nothing")], capture_output=True, text=True)
    assert run.returncode == 2 and "build the book first" in run.stderr
