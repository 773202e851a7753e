"""Structure of the chapter notebooks: stored without outputs, Colab cell first, a tagged
parameters cell reading fast mode, at least one exercise with a hidden solution and a check,
and every notebook listed in the book's table of contents."""

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _cells(path):
    return json.loads(path.read_text())["cells"]


def _src(cell):
    return "".join(cell["source"])


def test_numbered_in_reading_order():
    numbers = [int(p.name[:2]) for p in NOTEBOOKS]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_structure(path):
    cells = _cells(path)
    code = [c for c in cells if c["cell_type"] == "code"]
    assert all(not c.get("outputs") for c in code), "stored with outputs"
    assert cells[0]["cell_type"] == "markdown"
    assert len(re.findall(r"^# ", "\n".join(_src(c) for c in cells if c["cell_type"] ==
                                            "markdown"), flags=re.M)) == 1, "one H1 title"
    assert "google.colab" in _src(code[0]) and "pip install" in _src(code[0])
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1 and "fast_mode()" in _src(params[0])
    text = "\n".join(_src(c) for c in cells)
    assert "{exercise}" in text
    assert any("hide-input" in c.get("metadata", {}).get("tags", []) for c in code)
    assert "assert " in text


def test_every_notebook_in_toc():
    toc = (ROOT / "_toc.yml").read_text()
    listed = set(re.findall(r"file:\s*(notebooks/\S+)", toc))
    assert {f"notebooks/{p.stem}" for p in NOTEBOOKS} <= {Path(x).with_suffix("").as_posix()
                                                           for x in listed}
    yaml.safe_load(toc)
