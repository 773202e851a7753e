"""Check a built book: every chapter page exists with its figures, and pages render in Chromium.

Usage: ``python tools/check_site.py [_build/html] [--screenshots DIR]``. Exit status 1 when a page
or figure is missing or a rendered page is blank. Chromium (Debian package ``chromium``) is used
for the rendering check when present.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


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
    """The html page of every notebook chapter named in the TOC."""
    return {
        f: html / f"{f}.html"
        for f in toc_files(toc)
        if (ROOT / f"{f}.ipynb").exists() or f.startswith("notebooks/")
    }


def page_images(page: Path) -> list[Path]:
    """Images referenced by a page that exist on disk."""
    text = page.read_text(encoding="utf-8")
    out = []
    for src in re.findall(r'<img[^>]+src="([^"]+)"', text):
        if src.startswith(("http:", "https:", "data:")):
            continue
        target = (page.parent / src).resolve()
        if target.is_file() and target.stat().st_size > 0:
            out.append(target)
    return out


def check_pages(html: Path, toc: Path = ROOT / "_toc.yml") -> list[str]:
    """Problems found: missing index, missing chapter page, chapter page without a figure."""
    problems = []
    if not (html / "index.html").is_file():
        problems.append(f"{html / 'index.html'} is missing")
    for name in toc_files(toc):
        if not (html / f"{name}.html").is_file():
            problems.append(f"page {name}.html is missing")
    for name, page in chapter_pages(html, toc).items():
        if page.is_file() and not page_images(page):
            problems.append(f"chapter {name} has no figure")
    return problems


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 1600) -> Path:
    """Render ``page`` headless to ``png``."""
    exe = chromium()
    if exe is None:
        raise FileNotFoundError("chromium is not installed (Debian package 'chromium')")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                exe,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                f"--screenshot={png}",
                page.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    return png


def rendered_text(page: Path) -> str:
    """Visible text of a page after Chromium has loaded it (its DOM, tags stripped)."""
    exe = chromium()
    if exe is None:
        raise FileNotFoundError("chromium is not installed (Debian package 'chromium')")
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom",
             page.resolve().as_uri()],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    dom = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom)).strip()


def blank_fraction(png: Path) -> float:
    """Fraction of near-white pixels in a screenshot (1.0 = blank page)."""
    import numpy as np
    from PIL import Image

    grey = np.asarray(Image.open(png).convert("L"), dtype=float)
    return float((grey > 245).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", nargs="?", default=str(ROOT / "_build" / "html"))
    parser.add_argument("--screenshots", default=None, help="folder for PNG renderings")
    args = parser.parse_args(argv)
    html = Path(args.html)
    problems = check_pages(html)
    pages = {"intro": html / "book" / "intro.html"}
    chapters = chapter_pages(html)
    if chapters:
        first = sorted(chapters)[0]
        pages[first.split("/")[-1]] = chapters[first]
    if chromium():
        out = Path(args.screenshots or html.parent / "screenshots")
        out.mkdir(parents=True, exist_ok=True)
        for name, page in pages.items():
            if not page.is_file():
                continue
            png = screenshot(page, out / f"{name}.png")
            blank = blank_fraction(png)
            words = len(rendered_text(page).split())
            print(f"rendered {page.name}: {words} words, {blank:.0%} blank -> {png}")
            if blank > 0.995 or words < 50:
                problems.append(f"{page} renders blank ({words} words, {blank:.1%} white)")
    else:
        print("chromium not found: rendering check skipped")
    for p in problems:
        print("PROBLEM:", p)
    print(f"{len(toc_files())} TOC pages, {len(chapters)} chapters, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
