"""Build the course kit: one problem set per chapter, with otter-grader.

For every master notebook ``assignments/<chapter>/psNN.ipynb`` (otter-grader's assignment format)
this writes into ``<out>/<chapter>/``:

* ``student/psNN.ipynb`` and ``student/tests/`` (public tests only): what students work on;
* ``psNN.zip``: the same two, as one handout archive (upload it to Colab);
* ``psNN-autograder.zip``: every test, public and hidden, plus ``questions.json`` (name,
  points, manual or not, of every question), for ``assignments/grade.py``;
* ``instructor/psNN.ipynb``: the solved notebook with the model answers and rubrics, and
  ``instructor/tests/`` with every test.

The student files are checked before anything is written: a solution line, a model answer or a
hidden test found in them stops the build.

Usage: ``python assignments/build.py [--out _build/assignments] [CHAPTER ...]``
(``make assignments``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def masters(chapters: list[str] | None = None) -> dict[str, Path]:
    """``{chapter: master notebook}`` for ``assignments/<chapter>/ps*.ipynb`` (all chapters, or
    those named; ``KeyError`` names an unknown one)."""
    found = {p.parent.name: p for p in sorted(HERE.glob("0*_*/ps*.ipynb"))}
    if not chapters:
        return found
    unknown = [c for c in chapters if c not in found]
    if unknown:
        raise KeyError(f"no problem set for {unknown}; known: {sorted(found)}")
    return {c: found[c] for c in chapters}


def _cells(nb_path: Path) -> list[dict]:
    return json.loads(nb_path.read_text(encoding="utf-8"))["cells"]


def _source(cell: dict) -> str:
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def questions(master: Path) -> list[dict]:
    """The questions of a master notebook: ``[{"name", "points", "manual"}]`` in order."""
    out = []
    for cell in _cells(master):
        text = _source(cell)
        if cell["cell_type"] == "raw" and text.lstrip().startswith("# BEGIN QUESTION"):
            conf = dict(re.findall(r"^(\w+):\s*(.+?)\s*$", text, flags=re.M))
            out.append(
                {
                    "name": conf["name"],
                    "points": float(conf.get("points", 1)),
                    "manual": conf.get("manual", "false").lower() == "true",
                }
            )
    return out


def secret_lines(master: Path) -> list[str]:
    """Lines the student files must not contain: solution code, model answers and rubrics (lines
    of at least 20 characters, stripped, that the questions do not spell out themselves), and
    the names of hidden test functions."""
    lines: list[str] = []
    hidden: list[str] = []
    public: list[str] = []
    in_solution = False
    for cell in _cells(master):
        text = _source(cell)
        head = text.lstrip()
        if cell["cell_type"] == "raw":
            if head.startswith("# BEGIN SOLUTION"):
                in_solution = True
            elif head.startswith("# END SOLUTION"):
                in_solution = False
            continue
        body = text.splitlines()
        if not in_solution and not re.search(r"hidden:\s*true", text):
            public.append(text)
        if in_solution and cell["cell_type"] == "markdown":
            lines += body
        elif in_solution:
            block = False
            for ln in body:
                if re.search(r"#\s*BEGIN SOLUTION", ln):
                    block = True
                elif re.search(r"#\s*END SOLUTION", ln):
                    block = False
                elif block:
                    lines.append(ln)
                elif re.search(r"#\s*SOLUTION\s*$", ln):
                    lines.append(re.sub(r"#\s*SOLUTION\s*$", "", ln).split("=", 1)[-1])
        elif re.search(r"hidden:\s*true", text):
            hidden += [ln.split("(")[0] + "(" for ln in body if ln.startswith("def ")]
    given = "\n".join(public)  # what the questions themselves spell out (e.g. an API call)
    return [s for s in (ln.strip() for ln in lines) if len(s) >= 20 and s not in given] + hidden


def check_student(student_dir: Path, master: Path) -> None:
    """``AssertionError`` if a student file holds a solution, a model answer or a hidden test."""
    texts = {
        p: p.read_text(encoding="utf-8")
        for p in student_dir.rglob("*")
        if p.is_file() and p.suffix in (".ipynb", ".py")
    }
    for path, text in texts.items():
        if path.suffix == ".py":
            assert "hidden=True" not in text, f"{path}: a hidden test was exported"
        for marker in ("# SOLUTION", "BEGIN SOLUTION", "END SOLUTION", "TEST CONFIG"):
            assert marker not in text, f"{path}: otter marker {marker!r} left in a student file"
    for line in secret_lines(master):
        for path, text in texts.items():
            probe = json.dumps(line)[1:-1] if path.suffix == ".ipynb" else line
            assert probe not in text, f"{path} contains the solution/hidden line {line!r}"


COLAB_MARK = "# On Colab: install amnlib."


def with_chapter_install_cell(master: Path, chapter: str, dest: Path) -> Path:
    """Copy ``master`` to ``dest`` with its install placeholder (the code cell starting with
    :data:`COLAB_MARK`) replaced by the chapter notebook's Colab install cell, so that the
    student notebook installs amnlib exactly as the chapter does (one place names the
    repository)."""
    chapter_nb = ROOT / "notebooks" / f"{chapter}.ipynb"
    cells = json.loads(chapter_nb.read_text(encoding="utf-8"))["cells"]
    install = next(_source(c) for c in cells if c["cell_type"] == "code")
    if "google.colab" not in install:
        raise ValueError(f"{chapter_nb}: the first code cell is not the Colab install cell")
    nb = json.loads(master.read_text(encoding="utf-8"))
    marked = [
        c for c in nb["cells"] if c["cell_type"] == "code" and _source(c).startswith(COLAB_MARK)
    ]
    if len(marked) != 1:
        raise ValueError(f"{master}: expected one install placeholder cell ({COLAB_MARK!r})")
    marked[0]["source"] = install
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return dest


def build_one(chapter: str, master: Path, out: Path) -> dict[str, Path]:
    """Run ``otter assign`` on one master and lay out its products in ``out/chapter``.

    Returns ``{"student", "handout", "autograder", "instructor"}`` paths."""
    name = master.stem
    dest = out / chapter
    with tempfile.TemporaryDirectory(prefix=f"otter-{name}-") as tmp:
        source = with_chapter_install_cell(master, chapter, Path(tmp) / "master" / master.name)
        res = subprocess.run(
            [sys.executable, "-m", "otter", "assign", "--no-run-tests", str(source), "dist"],
            capture_output=True,
            text=True,
            cwd=tmp,
        )
        if res.returncode != 0:
            raise RuntimeError(f"otter assign failed for {master}:\n{res.stdout}\n{res.stderr}")
        tmp = Path(tmp) / "dist"
        check_student(tmp / "student", master)
        if dest.exists():
            shutil.rmtree(dest)
        (dest / "instructor").mkdir(parents=True)
        shutil.copytree(tmp / "student", dest / "student")
        shutil.copy(tmp / "autograder" / f"{name}.ipynb", dest / "instructor" / f"{name}.ipynb")
        # every test, hidden ones included, so that grader.check runs them in the solutions
        shutil.copytree(tmp / "autograder" / "tests", dest / "instructor" / "tests")
        (zip_in,) = (tmp / "autograder").glob(f"{name}-autograder_*.zip")
        autograder = dest / f"{name}-autograder.zip"
        shutil.copy(zip_in, autograder)
    with zipfile.ZipFile(autograder, "a") as zf:
        zf.writestr("questions.json", json.dumps(questions(master), indent=1))
    handout = dest / f"{name}.zip"
    with zipfile.ZipFile(handout, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted((dest / "student").rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(dest / "student").as_posix())
    return {
        "student": dest / "student" / f"{name}.ipynb",
        "handout": handout,
        "autograder": autograder,
        "instructor": dest / "instructor" / f"{name}.ipynb",
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("chapters", nargs="*", help="e.g. 01_toy_rnn_w (default: all)")
    ap.add_argument("--out", type=Path, default=Path("_build") / "assignments")
    args = ap.parse_args(argv)
    for chapter, master in masters(args.chapters).items():
        paths = build_one(chapter, master, args.out)
        qs = questions(master)
        manual = sum(q["manual"] for q in qs)
        print(
            f"{chapter}: {len(qs)} questions ({manual} manual, {len(qs) - manual} autograded)"
            f" -> {paths['student'].parent.parent}"
        )


if __name__ == "__main__":
    main()
