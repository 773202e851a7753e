"""Check a built book: every TOC page exists, each chapter shows every figure its notebook draws,
and every page renders in headless Chromium with typeset maths and no error output.

Usage: ``python tools/check_site.py [_build/html] [--screenshots DIR] [--no-browser]``. Exit
status 1 when a problem is found. The checks:

* **pages**: ``index.html`` and one page per file of ``_toc.yml``;
* **figures**: the images inside a chapter page's *cell outputs* (theme logos and launch buttons
  do not count) equal the figures its notebook draws, counted from the notebook source as its
  ``plt.show()`` / ``display(fig)`` calls (a cell that creates a figure without one is reported,
  so the count cannot drift);
* **rendering** (Debian package ``chromium``, driven over the DevTools protocol on a pipe, no
  network): for every TOC page, a full-page screenshot in ``--screenshots`` (default
  ``<html>/../screenshots``); the page fails when it is blank, shows a Python traceback or error
  output, prints an object repr (``<... object at 0x...>``, ``Generator(PCG64) at 0x...``), keeps
  raw TeX delimiters (``\\(``, ``\\[``, ``$$``) in its rendered text, shows an image squeezed
  out of its aspect ratio, has a table spilling past the text column (a wide table that scrolls
  inside its box is only listed), or, for a page with maths, has no MathJax output
  (``mjx-container``).
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--hide-scrollbars",
    "--mute-audio",
]
#: Width of the rendered pages (CSS px): the book theme's desktop layout with both sidebars.
PAGE_WIDTH = 1280
#: Tallest screenshot taken (CSS px); longer pages are cut there (and the cut is reported).
MAX_HEIGHT = 60_000

# Figures drawn by a code cell, as the notebook source says it.
_SHOW = re.compile(r"\bplt\.show\(\s*\)|\bdisplay\(\s*fig\w*\s*\)")
_CREATES = re.compile(r"\bplt\.(?:subplots|figure|subplot_mosaic)\(|\b\w+_figure\(")
# What a reader must never see on a page.
_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>|\b\w+\([\w.]*\) at 0x[0-9a-fA-F]+|"
                   r"\bat 0x[0-9a-fA-F]{8,}")
_RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$")
_TRACEBACK = re.compile(r"Traceback \(most recent call last\)")


# ----------------------------------------------------------------------------- pages and figures
def toc_files(toc: Path = ROOT / "_toc.yml") -> list[str]:
    """Every file named in ``_toc.yml`` (root first), without suffix."""
    data = yaml.safe_load(toc.read_text())
    files = [data["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(data.get("parts", data.get("chapters", [])))
    return [str(Path(f).with_suffix("")) for f in files]


def chapter_pages(html: Path, toc: Path = ROOT / "_toc.yml") -> dict[str, Path]:
    """The html page of every notebook named in the TOC: ``{"notebooks/01_x": path}``."""
    src = toc.parent
    return {f: html / f"{f}.html" for f in toc_files(toc) if (src / f"{f}.ipynb").exists()}


def _code_cells(notebook: Path) -> list[tuple[int, str]]:
    """(index, source) of the code cells whose output is published (no remove-* tag)."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    out = []
    for i, cell in enumerate(cells):
        tags = cell.get("metadata", {}).get("tags", [])
        if cell["cell_type"] != "code" or {"remove-output", "remove-cell"} & set(tags):
            continue
        out.append((i, "".join(cell["source"])))
    return out


def expected_figures(notebook: Path) -> int:
    """Figures a notebook draws: its ``plt.show()`` and ``display(fig)`` calls."""
    return sum(len(_SHOW.findall(src)) for _, src in _code_cells(notebook))


def notebook_figure_problems(notebook: Path) -> list[str]:
    """Cells that create a figure without showing it (the figure count would miss them)."""
    return [f"{notebook.name} cell {i} creates a figure without plt.show() / display(fig)"
            for i, src in _code_cells(notebook) if _CREATES.search(src) and not _SHOW.search(src)]


def output_images(page: Path) -> list[str]:
    """``src`` of the images inside a page's cell outputs that exist and are not empty."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
    out = []
    for img in soup.select("div.cell_output img"):
        src = img.get("src", "")
        if src.startswith("data:image/"):
            out.append(src[:40])
            continue
        target = (page.parent / src).resolve()
        if target.is_file() and target.stat().st_size > 0:
            out.append(src)
    return out


def figure_counts(html: Path, toc: Path = ROOT / "_toc.yml") -> dict[str, tuple[int, int]]:
    """``{chapter: (figures in the page's cell outputs, figures the notebook draws)}``."""
    src = toc.parent
    return {name: (len(output_images(page)) if page.is_file() else 0,
                   expected_figures(src / f"{name}.ipynb"))
            for name, page in chapter_pages(html, toc).items()}


def check_pages(html: Path, toc: Path = ROOT / "_toc.yml") -> list[str]:
    """Problems found without a browser: missing pages, figures missing from cell outputs."""
    problems = []
    if not (html / "index.html").is_file():
        problems.append(f"{html / 'index.html'} is missing")
    for name in toc_files(toc):
        if not (html / f"{name}.html").is_file():
            problems.append(f"page {name}.html is missing")
    for name in chapter_pages(html, toc):
        problems += notebook_figure_problems(toc.parent / f"{name}.ipynb")
    for name, (found, drawn) in figure_counts(html, toc).items():
        if found != drawn:
            problems.append(f"chapter {name}: {found} figures in the cell outputs, the notebook "
                            f"draws {drawn}")
    return problems


# ----------------------------------------------------------------------------- Chromium
def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe (fd 3 in, fd 4 out)."""

    def __init__(self, timeout: float = 120.0):
        exe = chromium()
        if exe is None:
            raise FileNotFoundError("chromium is not installed (Debian package 'chromium')")
        self.timeout = timeout
        self._profile = tempfile.TemporaryDirectory(prefix="check_site_")
        cmd_r, self._cmd_w = os.pipe()
        self._res_r, res_w = os.pipe()

        def child_fds():  # runs in the child before exec: commands on fd 3, replies on fd 4
            a = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(res_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self._log = open(Path(self._profile.name) / "chromium.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [exe, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile.name}",
             "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            preexec_fn=child_fds, close_fds=False)
        os.close(cmd_r)
        os.close(res_w)
        self._buffer = b""
        self._id = 0
        self._events: list[dict] = []

    def close(self) -> None:
        try:
            self._send("Browser.close")
        except Exception:  # noqa: BLE001 - already gone
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._cmd_w, self._res_r):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()
        self._profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("chromium did not answer in time")
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with status {self.proc.returncode}")
            import select

            ready, _, _ = select.select([self._res_r], [], [], 0.5)
            if ready:
                chunk = os.read(self._res_r, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def _send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._cmd_w, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._events.append(reply)

    def _wait_event(self, method: str, session: str, deadline: float) -> None:
        while True:
            for i, event in enumerate(self._events):
                if event.get("method") == method and event.get("sessionId") == session:
                    del self._events[i]
                    return
            self._events.append(self._read_message(deadline))

    def _eval(self, session: str, expression: str):
        result = self._send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                 "returnByValue": True}, session)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def render(self, page: Path, png: Path, width: int = PAGE_WIDTH) -> Rendered:
        """Load ``page``, wait for MathJax, read what a reader sees, save a full-page PNG."""
        target = self._send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self._send("Target.attachToTarget", {"targetId": target,
                                                       "flatten": True})["sessionId"]
        try:
            self._send("Page.enable", session=session)
            self._send("Emulation.setDeviceMetricsOverride", {
                "width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": False}, session)
            self._send("Page.navigate", {"url": page.resolve().as_uri()}, session)
            self._wait_event("Page.loadEventFired", session, time.monotonic() + self.timeout)
            self._eval(session, _WAIT_MATH_JS)
            info = self._eval(session, _PAGE_INFO_JS)
            height = min(int(info["height"]), MAX_HEIGHT)
            self._send("Emulation.setDeviceMetricsOverride", {
                "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                session)
            self._eval(session, "new Promise(r => setTimeout(r, 300))")
            height = min(int(self._eval(session, "document.documentElement.scrollHeight")),
                         MAX_HEIGHT)
            shot = self._send("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}}, session)
        finally:
            self._send("Target.closeTarget", {"targetId": target})
        png.parent.mkdir(parents=True, exist_ok=True)
        png.write_bytes(base64.b64decode(shot["data"]))
        return Rendered(page=page, png=png, height=int(info["height"]), **{
            k: info[k] for k in ("text", "prose", "math_sources", "math_rendered",
                                 "error_outputs", "stderr", "wide_tables",
                                 "spilling_tables", "distorted_images")})


# Waits for MathJax's first typeset (when the page loads MathJax) and for the web fonts.
_WAIT_MATH_JS = """
(async () => {
  for (let i = 0; i < 100 && !(window.MathJax && MathJax.startup && MathJax.startup.promise)
       && document.querySelector('script[src*="mathjax"], script[src*="MathJax"]'); i++) {
    await new Promise(r => setTimeout(r, 100));
  }
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  await document.fonts.ready;
  // no transitions: a sidebar caught mid-animation would make the screenshot lie
  const still = document.createElement('style');
  still.textContent = '*, *::before, *::after { transition: none !important; ' +
                      'animation: none !important; }';
  document.head.appendChild(still);
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  return true;
})()
"""

# What a reader sees: the text (code blocks excluded from "prose"), maths, error outputs.
_PAGE_INFO_JS = r"""
(() => {
  const main = document.querySelector('main') || document.body;
  const clone = document.body.cloneNode(true);  // both sidebars too (titles, contents)
  clone.querySelectorAll('pre, code, script, style, mjx-container, mjx-assistive-mml, textarea')
       .forEach(e => e.remove());
  return {
    text: main.innerText,
    prose: clone.textContent,
    height: Math.max(document.documentElement.scrollHeight, document.body.scrollHeight),
    math_sources: document.querySelectorAll('.math').length,
    math_rendered: document.querySelectorAll('mjx-container').length,
    error_outputs: [...document.querySelectorAll('.cell_output .traceback, .cell_output .error')]
                     .map(e => e.innerText.slice(0, 300)),
    stderr: [...document.querySelectorAll('.cell_output .stderr')].map(e => e.innerText),
    // images shown with another aspect ratio than their pixels (squeezed figures)
    distorted_images: [...main.querySelectorAll('article img')]
      .filter(i => i.naturalWidth && i.naturalHeight && i.clientWidth && i.clientHeight &&
                   Math.abs((i.clientWidth / i.clientHeight) /
                            (i.naturalWidth / i.naturalHeight) - 1) > 0.03)
      .map(i => `${(i.getAttribute('src') || '').slice(-24)} ${i.naturalWidth}x` +
                `${i.naturalHeight} shown ${i.clientWidth}x${i.clientHeight}`),
    // tables wider than the text column (they scroll inside their output box) and tables
    // that spill past the column because nothing around them scrolls
    wide_tables: [...main.querySelectorAll('article table')]
      .filter(t => t.scrollWidth > (main.querySelector('article') || main).clientWidth + 2)
      .map(t => t.innerText.replace(/\s+/g, ' ').slice(0, 80)),
    spilling_tables: [...main.querySelectorAll('article table')]
      .filter(t => t.getBoundingClientRect().right >
                   (main.querySelector('article') || main).getBoundingClientRect().right + 2)
      .filter(t => { for (let e = t.parentElement; e && e.tagName !== 'ARTICLE';
                          e = e.parentElement) {
                       if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(e).overflowX))
                         return false; }
                     return true; })
      .map(t => t.innerText.replace(/\s+/g, ' ').slice(0, 80)),
  };
})()
"""


@dataclass
class Rendered:
    """A page as Chromium shows it."""

    page: Path
    png: Path
    text: str
    prose: str
    height: int
    math_sources: int
    math_rendered: int
    error_outputs: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    wide_tables: list[str] = field(default_factory=list)
    spilling_tables: list[str] = field(default_factory=list)
    distorted_images: list[str] = field(default_factory=list)

    @property
    def words(self) -> int:
        return len(self.text.split())

    def blank_fraction(self) -> float:
        return blank_fraction(self.png)

    def problems(self) -> list[str]:
        """What is wrong with the page, one line each (empty when it reads well)."""
        name = self.page.name
        out = []
        blank = self.blank_fraction()
        if blank > 0.995 or self.words < 50:
            out.append(f"{name} renders blank ({self.words} words, {blank:.1%} white)")
        for err in self.error_outputs:
            out.append(f"{name} shows an error output: {err[:160]!r}")
        for match in _TRACEBACK.finditer(self.text):
            out.append(f"{name} shows a Python traceback/error: {_around(self.text, match)!r}")
        for text in self.stderr:
            if re.search(r"Warning|Error|Traceback", text):
                out.append(f"{name} shows a warning/error on stderr: {text[:160]!r}")
        for match in _REPR.finditer(self.text):
            out.append(f"{name} prints an object repr: {_around(self.text, match)!r}")
        for match in _RAW_TEX.finditer(self.prose):
            out.append(f"{name} shows raw TeX: {_around(self.prose, match)!r}")
            break
        for image in self.distorted_images:
            out.append(f"{name} shows a distorted image (aspect ratio changed): {image}")
        for table in self.spilling_tables:
            out.append(f"{name} has a table that spills past the text column: {table!r}")
        if self.math_sources and not self.math_rendered:
            out.append(f"{name} has {self.math_sources} maths elements and no MathJax output")
        if self.height > MAX_HEIGHT:
            out.append(f"{name} is {self.height} px tall: the screenshot stops at {MAX_HEIGHT}")
        return out


def _around(text: str, match: re.Match, width: int = 50) -> str:
    return text[max(0, match.start() - width): match.end() + width].replace("\n", " ")


def blank_fraction(png: Path) -> float:
    """Fraction of near-white pixels in a screenshot (1.0 = blank page)."""
    import numpy as np
    from PIL import Image

    grey = np.asarray(Image.open(png).convert("L"), dtype=float)
    return float((grey > 245).mean())


def render_pages(pages: dict[str, Path], out: Path) -> dict[str, Rendered]:
    """Render every page in one browser; screenshots ``out/<name>.png``."""
    rendered = {}
    with Browser() as browser:
        for name, page in pages.items():
            rendered[name] = browser.render(page, out / f"{name.replace('/', '_')}.png")
    return rendered


def check_rendering(html: Path, out: Path, toc: Path = ROOT / "_toc.yml",
                    pages: list[str] | None = None) -> tuple[dict[str, Rendered], list[str]]:
    """Render every TOC page (or ``pages``); problems include chapter pages without maths."""
    names = pages if pages is not None else toc_files(toc)
    found = {n: html / f"{n}.html" for n in names if (html / f"{n}.html").is_file()}
    rendered = render_pages(found, out)
    chapters = chapter_pages(html, toc)
    problems = []
    for name, r in rendered.items():
        problems += r.problems()
        if name in chapters and not r.math_rendered:
            problems.append(f"chapter {name} shows no typeset maths (no mjx-container)")
    return rendered, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", nargs="?", default=str(ROOT / "_build" / "html"))
    parser.add_argument("--toc", default=str(ROOT / "_toc.yml"))
    parser.add_argument("--screenshots", default=None, help="folder for the PNG renderings")
    parser.add_argument("--no-browser", action="store_true", help="skip the Chromium checks")
    args = parser.parse_args(argv)
    html, toc = Path(args.html), Path(args.toc)
    problems = check_pages(html, toc)
    for name, (found, drawn) in figure_counts(html, toc).items():
        print(f"figures {name}: {found} in cell outputs, {drawn} drawn by the notebook")
    if args.no_browser:
        print("rendering check skipped (--no-browser)")
    elif chromium():
        out = Path(args.screenshots or html.parent / "screenshots")
        rendered, more = check_rendering(html, out, toc)
        problems += more
        for name, r in rendered.items():
            print(f"rendered {name}: {r.words} words, {r.height} px, {r.math_rendered} maths, "
                  f"{r.blank_fraction():.0%} white -> {r.png}")
            for table in r.wide_tables:
                print(f"  note: a table wider than the column scrolls sideways: {table[:60]!r}")
    else:
        print("chromium not found: rendering check skipped")
    for p in problems:
        print("PROBLEM:", p)
    print(f"{len(toc_files(toc))} TOC pages, {len(chapter_pages(html, toc))} chapters, "
          f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
