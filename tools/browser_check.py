"""Open the built book in headless Chromium, with the network unreachable, and report what a reader sees.

For every page: how many formulas the math renderer typeset out of how many there are, TeX delimiters
left in the visible text, images that did not load, nbdev directives that leaked into the page, code
blocks wider than their column, and every JavaScript error or failed load the console reported.
Optionally a screenshot of each page at each width.

    python tools/browser_check.py _build/book/_build/html                    # every chapter, a table
    python tools/browser_check.py _build/book/_build/html --shots _build/shots --widths 1280,390 nbs/01_lorentz.html

It speaks the DevTools protocol to Chromium directly (`websocket-client`); the browser is Debian's
`chromium` (or $CHROMIUM). Exit status 1 when a page has a problem, 2 when there is no browser.
"""

import argparse
import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")

def find_browser() -> str | None:
    "The Chromium executable: $CHROMIUM, else the first of `BROWSERS` on PATH, else None."
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


class Browser:
    "One headless Chromium with no network, driven over the DevTools protocol; a context manager."

    def __init__(self, executable: str, timeout: float = 60.0):
        self.executable, self.timeout = executable, timeout
        self._ids = itertools.count(1)
        self.events = []                      # DevTools events since the last `open`

    def __enter__(self):
        import websocket   # websocket-client, a dev dependency
        self._profile = tempfile.mkdtemp(prefix="meru_nb_chromium_")
        flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
                 "--disable-extensions", "--mute-audio", "--remote-debugging-port=0", f"--user-data-dir={self._profile}",
                 # no network: every host name fails to resolve and every proxied request goes nowhere
                 "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://0.0.0.0:9", "about:blank"]
        self._proc = subprocess.Popen([self.executable, *flags], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file, deadline = Path(self._profile) / "DevToolsActivePort", time.monotonic() + self.timeout
        while not (port_file.is_file() and len(port_file.read_text().split()) == 2):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"{self.executable} did not start (exit {self._proc.poll()})")
            time.sleep(0.1)
        port, path = port_file.read_text().split()
        self._ws = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=self.timeout,
                                               suppress_origin=True)
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=True)
        return self

    def __exit__(self, *exc):
        with contextlib.suppress(Exception):
            self._ws.close()
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        shutil.rmtree(self._profile, ignore_errors=True)

    def call(self, method: str, session: bool = False, **params) -> dict:
        "Send one command and return its result; events that arrive meanwhile are kept in `self.events`."
        msg_id = next(self._ids)
        msg = {"id": msg_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self._session
        self._ws.send(json.dumps(msg))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            reply = json.loads(self._ws.recv())
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)
        raise TimeoutError(f"{method}: no reply in {self.timeout:.0f} s")

    def wait_for(self, event: str):
        "Block until `event` arrives (or was seen since the last navigation)."
        deadline = time.monotonic() + self.timeout
        while not any(e["method"] == event for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {event} in {self.timeout:.0f} s")
            reply = json.loads(self._ws.recv())
            if "method" in reply:
                self.events.append(reply)

    def open(self, url: str, width: int = 1280, height: int = 900):
        "Load `url` at a window of `width` × `height` CSS pixels (phone-like below 600) and wait for its load event."
        self.events = []
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=width < 600)
        self.call("Page.navigate", session=True, url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str):
        "The value of a JavaScript `expression` (promises awaited) in the open page."
        result = self.call("Runtime.evaluate", session=True, expression=expression, awaitPromise=True,
                           returnByValue=True, timeout=int(self.timeout * 1000))
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def errors(self) -> list[str]:
        "JavaScript exceptions, console errors and failed loads since the last `open`."
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                out.append(d.get("exception", {}).get("description") or d.get("text", "exception"))
            elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") == "error":
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif e["method"] == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append(f"{p['entry'].get('text')} {p['entry'].get('url', '')}".strip())
        return [line.splitlines()[0][:300] for line in out]

    def screenshot(self, path: Path):
        "A PNG of the whole page (not only the window) at the current width."
        png = self.call("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=True)["data"]
        Path(path).write_bytes(base64.b64decode(png))


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
    code_blocks: code.length,
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
    out += [f"console: {line}" for line in report["errors"]]
    return out

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
