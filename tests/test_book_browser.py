"""The built book as a reader's browser shows it, with no network: every chapter in headless Chromium.

Runs after the book is built (`make browser`, part of `make test`), not in the plain pytest pass:
it is marked `browser` and pytest deselects that mark unless asked. Without a browser it skips with a
message, unless MERU_NB_REQUIRE_BROWSER=1 (CI), where a missing browser is a failure.
"""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import browser_check  # noqa: E402

pytestmark = pytest.mark.browser
HTML = Path(os.environ.get("MERU_NB_BOOK_HTML", ROOT / "_build" / "book" / "_build" / "html"))
CHAPTERS = browser_check.chapters(HTML)


@pytest.fixture(scope="module")
def browser():
    exe = browser_check.find_browser()
    if exe is None:
        message = "no Chromium on this machine (apt install chromium, or set $CHROMIUM)"
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
    report = browser_check.check_page(browser, page, width)
    assert browser_check.problems(report) == []   # at 1280 px, a code block wider than its column is one


def test_the_check_sees_unrendered_math_and_broken_images(browser, tmp_path):
    "The probe must be able to fail: a page whose math cannot render and whose image is missing."
    page = tmp_path / "nbs" / "broken.html"
    page.parent.mkdir()
    page.write_text('<html><head><script src="https://cdn.example.invalid/mathjax.js"></script></head><body><main>'
                    '<p><span class="math notranslate nohighlight">\\(x^2\\)</span></p><img src="missing.png">'
                    "<pre>#| export</pre></main></body></html>")
    report = browser_check.check_page(browser, page)
    found = browser_check.problems(report)
    assert report["formulas"] == 1 and report["rendered"] == 0
    assert any("formulas not rendered" in f for f in found)
    assert any("TeX delimiters" in f for f in found)
    assert any("missing.png" in f for f in found)
    assert any("nbdev directive" in f for f in found)
    assert any(f.startswith("blocked, not a file:") for f in found)   # the script it asked the network for
