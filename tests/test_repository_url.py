"""The repository address is written once, in pyproject.toml ``[project.urls]``; the notebooks'
Colab install cell and the book's ``_config.yml`` (launch and repository buttons) follow it."""

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def repository_url(root: Path = ROOT) -> str:
    return tomllib.loads((root / "pyproject.toml").read_text())["project"]["urls"]["Repository"]


def url_mismatches(root: Path = ROOT) -> list[str]:
    """Places that name another repository address than pyproject's (empty when they agree)."""
    url = repository_url(root)
    out = []
    config = yaml.safe_load((root / "_config.yml").read_text())
    if config["repository"]["url"] != url:
        out.append(f"_config.yml repository.url {config['repository']['url']!r}")
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        colab = next("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        installs = re.findall(r"git\+(\S+?)[\"'\s@]", colab)
        if installs != [url]:
            out.append(f"{path.name} Colab cell installs {installs}")
    return out


def test_one_repository_address():
    url = repository_url()
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url)
    assert url_mismatches() == []
    # nowhere else: every tracked text file naming it is one of the places above
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    naming = {f for f in tracked if f.endswith((".py", ".md", ".yml", ".toml", ".ipynb", ".txt",
                                                ".cfg", "Makefile"))
              and (ROOT / f).is_file() and url in (ROOT / f).read_text(errors="ignore")}
    allowed = {"pyproject.toml", "_config.yml"} | {f for f in naming if f.startswith("notebooks/")}
    assert naming <= allowed
    assert (ROOT / "pyproject.toml").read_text().count(url) == 1


def test_a_changed_address_is_caught(tmp_path):
    for name in ("pyproject.toml", "_config.yml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    assert url_mismatches(tmp_path) == []
    text = (tmp_path / "pyproject.toml").read_text()
    moved = text.replace(repository_url(), "https://github.com/someone-else/amnlib")
    (tmp_path / "pyproject.toml").write_text(moved)
    found = url_mismatches(tmp_path)
    assert len(found) == 1 + len(list((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")))
    assert found[0].startswith("_config.yml")
