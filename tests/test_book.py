"""The book builds (warnings are errors), every chapter page shows every figure its notebook draws,
and every TOC page renders in headless Chromium with typeset maths and no error output.

The real book is built in fast mode into a temporary folder with its own execution cache, so the
fast outputs never reach the cache of `make book`. A tiny broken book (a headless MPLBACKEND
reaching the kernel, MathJax missing, an error output, an object repr, a table spilling past the
column, a blank page) shows that each check fails when it should."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import check_site  # noqa: E402

HAS_CHROMIUM = check_site.chromium() is not None
JB = Path(sys.executable).with_name("jupyter-book")


def _build(config: Path, source: Path, out: Path, env: dict, strict: bool = True) -> Path:
    """``jupyter-book build``; ``strict``: warnings are errors, as in `make book`."""
    proc = subprocess.run(
        [str(JB), "build", *(["-W", "--keep-going"] if strict else []), "--config", str(config),
         "--path-output", str(out), str(source)],
        capture_output=True, text=True, env=env, timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out / "_build" / "html"


def _kernel_env(**extra) -> dict:
    """This process's environment without MPLBACKEND (the kernels keep the inline backend)."""
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    return {**env, **extra}


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["cache"] = str(out / "jupyter_cache")
    cfg = out / "_config.yml"
    cfg.write_text(yaml.safe_dump(config))
    return _build(cfg, ROOT, out, _kernel_env(AMNLIB_FAST="1"))


def test_every_page_and_figure(built_site):
    assert check_site.check_pages(built_site) == []
    counts = check_site.figure_counts(built_site)
    chapters = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert sorted(counts) == [f"notebooks/{p.stem}" for p in chapters]
    for name, (found, drawn) in counts.items():
        assert found == drawn >= 1, name
    # MathJax ships with the site (no CDN)
    assert (built_site / "_static" / "mathjax" / "tex-chtml.js").stat().st_size > 100_000
    page = (built_site / "notebooks" / "02_rnn_solvers.html").read_text()
    assert "_static/mathjax/tex-chtml.js" in page and "cdn.jsdelivr" not in page
    refs = (built_site / "book" / "references.html").read_text()
    assert "faure2023amn" in refs or "Faure" in refs


@pytest.mark.skipif(not HAS_CHROMIUM, reason="Debian package chromium missing")
def test_every_toc_page_renders_in_chromium(built_site):
    shots = ROOT / "_build" / "screenshots-fast"  # kept for a look after a failure (git-ignored)
    rendered, problems = check_site.check_rendering(built_site, shots)
    assert problems == []
    assert set(rendered) == set(check_site.toc_files())
    for name in check_site.chapter_pages(built_site):
        assert rendered[name].math_rendered > 0, name
        assert rendered[name].png.stat().st_size > 10_000
    assert "Artificial Metabolic Networks" in rendered["book/intro"].text


def test_toc_lists_background_pages():
    names = check_site.toc_files()
    for page in ["book/intro", "book/fba", "book/duality", "book/rnn_solvers", "book/hybrid",
                 "book/glossary", "book/references"]:
        assert page in names


# --------------------------------------------------------------------- the checks, seen failing
def _notebook(cells: list[tuple[str, str]]) -> dict:
    def cell(kind, text, tags=()):
        c = {"cell_type": kind, "metadata": {"tags": list(tags)} if tags else {},
             "source": text.splitlines(keepends=True)}
        if kind == "code":
            c.update(outputs=[], execution_count=None)
        return c

    return {"cells": [cell(*c) for c in cells], "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                        "language": "python"}}}


def test_expected_figures_from_source(tmp_path):
    nb = tmp_path / "n.ipynb"
    nb.write_text(json.dumps(_notebook([
        ("markdown", "# Chapter 1: x"),
        ("code", "fig, ax = plt.subplots()\nax.plot([1])\nplt.show()"),
        ("code", "fig = comparison_figure(a)\ndisplay(fig)"),
        ("code", "fig, ax = plt.subplots()\nax.plot([1])"),  # creates, never shown
        ("code", "plt.show()", ("remove-output",)),  # not published
    ])))
    assert check_site.expected_figures(nb) == 2
    assert check_site.notebook_figure_problems(nb) == [
        "n.ipynb cell 3 creates a figure without plt.show() / display(fig)"]


PNG_40x10 = ("iVBORw0KGgoAAAANSUhEUgAAACgAAAAKCAIAAABJ+IsHAAAAHElEQVR4nGM8ISfHMBCAaUBsHbV41OJRi4eF"
             "xQD/xAEYFrzagQAAAABJRU5ErkJggg==")
LONG_TEXT = " ".join(["Words that fill the page so that it is not blank."] * 12)


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory):
    """A one-chapter book built the wrong way: MPLBACKEND=Agg reaches the kernel, MathJax is not
    shipped (its script points at a file that does not exist, as a CDN does offline), a cell
    raises, a cell prints a Generator repr, a table is too wide, an image is squeezed, and the
    root page is empty."""
    src = tmp_path_factory.mktemp("broken")
    (src / "notebooks").mkdir()
    (src / "intro.md").write_text("# Tiny\n")
    (src / "notebooks" / "ch.ipynb").write_text(json.dumps(_notebook([
        ("markdown", "# Chapter 1: tiny\n\nMaths $x^2$ and\n\n$$\\int_0^1 x\\,dx$$\n\n"
         + LONG_TEXT + '\n\n<table style="width: 1500px"><tr><td>too wide</td></tr></table>\n'
         f'\n<img alt="squeezed" src="data:image/png;base64,{PNG_40x10}" '
         'style="width: 100px; height: 100px" />\n'),
        ("code", "import matplotlib.pyplot as plt\nimport numpy as np\n\n"
                 "from amnlib.plotting import set_style\n\nset_style()\n"
                 "fig, ax = plt.subplots()\nax.plot([1, 2])\nplt.show()"),
        ("code", "np.random.default_rng(0)"),
        ("code", "raise ValueError('broken on purpose')"),
    ])))
    (src / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n  - file: notebooks/ch\n")
    config = {"title": "broken", "execute": {"execute_notebooks": "force", "allow_errors": True},
              "sphinx": {"config": {"mathjax_path": "mathjax-missing/tex-chtml.js"}}}
    (src / "_config.yml").write_text(yaml.safe_dump(config))
    return src, _build(src / "_config.yml", src, src, _kernel_env(MPLBACKEND="Agg"), strict=False)


def test_figure_check_fails_on_an_agg_build(broken_site):
    src, html = broken_site
    problems = check_site.check_pages(html, src / "_toc.yml")
    assert problems == ["chapter notebooks/ch: 0 figures in the cell outputs, the notebook "
                        "draws 1"]


@pytest.mark.skipif(not HAS_CHROMIUM, reason="Debian package chromium missing")
def test_rendering_check_fails_on_a_broken_page(broken_site, tmp_path):
    src, html = broken_site
    rendered, problems = check_site.check_rendering(html, tmp_path, src / "_toc.yml")
    assert sorted(rendered) == ["intro", "notebooks/ch"]
    text = "\n".join(problems)
    assert "intro.html renders blank" in text
    assert "ch.html shows an error output" in text and "broken on purpose" in text
    assert "ch.html shows a Python traceback" in text
    assert "ch.html prints an object repr" in text and "Generator(PCG64) at 0x" in text
    assert "ch.html shows raw TeX" in text
    assert "chapter notebooks/ch shows no typeset maths" in text
    assert "ch.html has a table that spills past the text column: 'too wide'" in text
    assert "ch.html shows a distorted image (aspect ratio changed)" in text
    # set_style() says on stderr that the kernel's backend drops figures
    assert "ch.html shows a warning/error on stderr" in text and "records no figure" in text
    assert rendered["notebooks/ch"].png.is_file() and rendered["intro"].png.is_file()
    assert rendered["notebooks/ch"].math_rendered == 0
