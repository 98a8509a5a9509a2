"""Open the built book in headless Chromium, with the network unreachable, and report what a reader sees.

For every page: how many formulas the math renderer typeset out of how many there are, TeX delimiters
left in the visible text, images that did not load, nbdev directives that leaked into the page, display
formulas wider than their column that cannot scroll, code blocks wider than their column (a problem at
desktop width), every JavaScript error the console reported
and every request that failed. Optionally a screenshot of each page at each width.

    python tools/browser_check.py _build/book/_build/html                    # every chapter, a table
    python tools/browser_check.py _build/book/_build/html --shots _build/shots --widths 1280,390 nbs/01_lorentz.html

It drives Chromium through Playwright for Python (`playwright`, a dev dependency), always with the browser
installed on the machine: Debian's `chromium` (or $CHROMIUM), given to Playwright as its executable.
Playwright's own browsers are never downloaded (no `playwright install`). Only file:// URLs load: any other
request is aborted, the browser context is offline and no host name resolves. Exit status 1 when a page has
a problem, 2 when there is no browser.
"""

import argparse
import itertools
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
DESKTOP = 1000          # from this window width on, a code block must fit its column
NOT_A_FILE = re.compile(r"^(?!file:)")   # every URL Playwright may see that is not file://

def find_browser() -> str | None:
    "The Chromium executable: $CHROMIUM, else the first of `BROWSERS` on PATH, else None."
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


class Browser:
    "One headless Chromium (the machine's, through Playwright) that reaches file:// URLs and nothing else; a context manager."

    def __init__(self, executable: str, timeout: float = 60.0):
        self.executable, self.timeout = executable, timeout
        self.events = []                  # (kind, text) since the last `open`: console, page error, failed request
        self._contexts = {}               # (width, height) -> a browser context with that window
        self.page = None                  # the open page

    def __enter__(self):
        from playwright.sync_api import sync_playwright   # playwright, a dev dependency
        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=self.executable, headless=True, timeout=self.timeout * 1000,
                # no network below Playwright's own blocking too: every host name fails to resolve
                args=["--disable-gpu", "--hide-scrollbars", "--mute-audio", "--host-resolver-rules=MAP * ~NOTFOUND"])
        except BaseException:
            self._playwright.stop()
            raise
        return self

    def __exit__(self, *exc):
        try:
            self._browser.close()
        finally:
            self._playwright.stop()

    def _context(self, width: int, height: int):
        "The browser context for a window of this size, made on first use: phone-like (touch, mobile viewport) below 600."
        if (width, height) not in self._contexts:
            context = self._browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1,
                                                is_mobile=width < 600, has_touch=width < 600, offline=True,
                                                service_workers="block")
            context.set_default_timeout(self.timeout * 1000)
            context.route(NOT_A_FILE, self._block)
            self._contexts[width, height] = context
        return self._contexts[width, height]

    def _new_page(self, width: int, height: int):
        """A fresh page for each `open`, the last one closed: a page can still report after it was measured (a failed
        image's load, again, as it closes), and only the open page's events are kept."""
        old, self.page = self.page, None
        if old is not None:
            old.close()
        self.events = []
        page = self.page = self._context(width, height).new_page()
        def keep(kind, text):
            if page is self.page:
                self.events.append((kind, text))
        page.on("console", lambda message: message.type == "error" and keep(
            "console", f"{message.text} {message.location.get('url', '')}".strip()))
        page.on("pageerror", lambda error: keep("pageerror", f"{error.name}: {error.message}"))
        page.on("requestfailed", lambda request: keep("requestfailed", f"{request.url} ({request.failure})"))
        return page

    def _block(self, route):
        "Abort a request that is not for a file, the book must read offline; note it if the open page made it."
        try:
            mine = route.request.frame.page is self.page
        except Exception:                 # a worker's request has no frame
            mine = True
        if mine:
            self.events.append(("blocked", route.request.url))
        route.abort("blockedbyclient")

    def open(self, url: str, width: int = 1280, height: int = 900):
        "Load `url` at a window of `width` × `height` CSS pixels (phone-like below 600) and wait for its load event."
        self._new_page(width, height).goto(url, wait_until="load")

    def evaluate(self, expression: str):
        "The value of a JavaScript `expression` (promises awaited) in the open page."
        return self.page.evaluate(expression)

    def errors(self) -> list[str]:
        "JavaScript exceptions, console errors, failed and blocked requests since the last `open`, one line each."
        failed = {text.split(" (")[0] for kind, text in self.events if kind == "requestfailed"}
        out = []
        for kind, text in self.events:
            if kind == "console" and text.startswith("Failed to load resource") and text.split()[-1] in failed:
                continue                  # the same failure as a `requestfailed` line, which names the URL
            out.append({"console": "console: ", "pageerror": "exception: ", "requestfailed": "request failed: ",
                        "blocked": "blocked, not a file: "}[kind] + text)
        return [line.splitlines()[0][:300] for line in out if line.strip()]

    def screenshot(self, path: Path):
        "A PNG of the whole page (not only the window) at the current width."
        self.page.screenshot(path=str(path), full_page=True)


# What the page shows, measured in the page once the math renderer has finished.
PROBE = r"""
(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  const images = [...document.images];
  await Promise.all(images.map(i => i.complete ? null : new Promise(r => { i.onload = i.onerror = r; })));
  const main = document.querySelector("main") || document.body;
  const text = main.innerText;
  const prose = main.cloneNode(true);            // the text outside code: a regex in a test may hold "\["
  prose.querySelectorAll("pre, code, mjx-container").forEach(e => e.remove());
  const formulas = [...main.querySelectorAll(".math")];
  const left = (prose.textContent.match(/\\\(|\\\[|\$\$/g) || []).length;
  const directives = text.split("\n").filter(l => /^\s*#\s*\|/.test(l) || /^\s*#\s*(export|hide)\b/.test(l));
  const code = [...main.querySelectorAll("div.highlight pre")].filter(p => !p.closest(".cell_output"));   // source, not outputs
  return {
    formulas: formulas.length,
    rendered: formulas.filter(f => f.querySelector("mjx-container, math")).length,
    tex_left: left,
    images: images.length,
    broken_images: images.filter(i => !(i.naturalWidth > 0)).map(i => i.getAttribute("src")),
    directives: directives.slice(0, 5),
    wide_code: code.filter(p => p.scrollWidth > p.clientWidth + 1).length,
    cut_math: [...main.querySelectorAll("mjx-container[display=true]")].filter(
      m => m.scrollWidth > m.clientWidth + 1 && !["auto", "scroll"].includes(getComputedStyle(m).overflowX)).length,
    code_blocks: code.length,
    cells: main.querySelectorAll("div.cell").length,                 // code cells, and those that show an output
    cells_shown: main.querySelectorAll("div.cell div.cell_output").length,
    page_width: document.documentElement.scrollWidth,
  };
})()
"""

def check_page(browser: Browser, html: Path, width: int = 1280, shots: Path | None = None) -> dict:
    "Open one page of the built book and measure it (see PROBE); add the console's errors; save a screenshot."
    tic = time.perf_counter()
    browser.open(Path(html).resolve().as_uri(), width=width)
    report = browser.evaluate(PROBE)
    report.update(page=str(html), width=width, errors=browser.errors(), seconds=round(time.perf_counter() - tic, 2))
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
        browser.screenshot(shots / f"{Path(html).stem}_{width}.png")
    return report

def problems(report: dict) -> list[str]:
    "What is wrong with a page, one line each (empty when nothing is)."
    out = []
    if report["rendered"] < report["formulas"]:
        out.append(f"{report['formulas'] - report['rendered']} of {report['formulas']} formulas not rendered")
    if report["tex_left"]:
        out.append(f"{report['tex_left']} TeX delimiters left in the visible text")
    out += [f"image not loaded: {src}" for src in report["broken_images"]]
    out += [f"nbdev directive shown: {line.strip()}" for line in report["directives"]]
    if report["cut_math"]:
        out.append(f"{report['cut_math']} display formulas wider than their column that cannot scroll")
    if report["cells"] and not report["cells_shown"]:
        out.append(f"none of {report['cells']} code cells shows an output: the chapter was not executed")
    if report["wide_code"] and report["width"] >= DESKTOP:
        out.append(f"{report['wide_code']} of {report['code_blocks']} code blocks wider than their column")
    return out + report["errors"]

def chapters(html_root: Path) -> list[Path]:
    "Every page of the book that comes from a chapter, plus the landing page if there is one."
    return sorted(Path(html_root).glob("nbs/*.html"))

def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="browser_check", description=__doc__.split("\n\n")[0])
    p.add_argument("html_root", type=Path, help="the built book's HTML folder (_build/book/_build/html)")
    p.add_argument("pages", nargs="*", help="pages under it to check (default: every chapter)")
    p.add_argument("--widths", default="1280", help="comma-separated window widths in CSS pixels (default 1280)")
    p.add_argument("--shots", type=Path, help="save a full-page screenshot of each page and width here")
    p.add_argument("--json", type=Path, help="write the reports here")
    a = p.parse_args(argv)
    exe = find_browser()
    if exe is None:
        print("browser_check: no Chromium found (install Debian's chromium, or set $CHROMIUM)", file=sys.stderr)
        return 2
    pages = [a.html_root / page for page in a.pages] or chapters(a.html_root)
    if not pages:
        print(f"browser_check: no chapters under {a.html_root}/nbs: build the book first", file=sys.stderr)
        return 2
    widths = [int(w) for w in a.widths.split(",")]
    reports, bad = [], 0
    with Browser(exe) as browser:
        for page, width in itertools.product(pages, widths):
            r = check_page(browser, page, width, a.shots)
            reports.append(r)
            issues = problems(r)
            bad += bool(issues)
            print(f"{Path(page).name:28s} {width:5d}px  formulas {r['rendered']:4d}/{r['formulas']:<4d} "
                  f"images {r['images'] - len(r['broken_images'])}/{r['images']}  wide code {r['wide_code']}/{r['code_blocks']}"
                  f"  {r['seconds']:.1f} s" + "".join(f"\n    {line}" for line in issues))
    if a.json:
        a.json.write_text(json.dumps(reports, indent=1) + "\n")
    return 1 if bad else 0

if __name__ == "__main__":
    sys.exit(main())
