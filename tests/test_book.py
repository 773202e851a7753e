"""The book builds (warnings are errors), every chapter page has its figures, and pages render
in headless Chromium. Builds in fast mode into a temporary folder with its own execution cache,
so the fast outputs never reach the cache of `make book`."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import check_site  # noqa: E402


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["cache"] = str(out / "jupyter_cache")
    cfg = out / "_config.yml"
    cfg.write_text(yaml.safe_dump(config))
    jb = Path(sys.executable).with_name("jupyter-book")
    env = {**os.environ, "AMNLIB_FAST": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [str(jb), "build", "-W", "--keep-going", "--config", str(cfg), "--path-output", str(out),
         str(ROOT)],
        capture_output=True, text=True, env=env, timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out / "_build" / "html"


def test_every_page_and_figure(built_site):
    assert check_site.check_pages(built_site) == []
    for name, page in check_site.chapter_pages(built_site).items():
        assert len(check_site.page_images(page)) >= 1, name
    assert "faure2023amn" in (built_site / "book" / "references.html").read_text() or \
        "Faure" in (built_site / "book" / "references.html").read_text()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian package chromium missing")
def test_pages_render_in_chromium(built_site, tmp_path):
    pages = [built_site / "book" / "intro.html", *check_site.chapter_pages(built_site).values()][:2]
    for page in pages:
        png = check_site.screenshot(page, tmp_path / f"{page.stem}.png")
        assert check_site.blank_fraction(png) < 0.995
        text = check_site.rendered_text(page)
        assert len(text.split()) > 100
    assert "Artificial Metabolic Networks" in check_site.rendered_text(pages[0])


def test_toc_lists_background_pages():
    names = check_site.toc_files()
    for page in ["book/intro", "book/fba", "book/duality", "book/rnn_solvers", "book/hybrid",
                 "book/glossary", "book/references"]:
        assert page in names
