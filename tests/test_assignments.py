"""The course kit (assignments/, issue 16): every problem set builds with otter-grader into a
student notebook without solutions or hidden tests, an autograder archive and an instructor
notebook; graded offline (no Docker) by ``assignments/grade.py``, the solutions get full marks,
the untouched student notebook gets 0 on every autograded question, and one deliberately wrong
answer per set loses exactly that question's points.

Each chapter runs three notebooks (~15-30 s each on a 2-core CPU). The chapters are split over
this file (01-03 and the light 07) and ``test_assignments_more.py`` (04-06) so that
``-n 2 --dist loadfile`` grades both halves in parallel.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import shutil
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(
        f"assignments_{name}", ROOT / "assignments" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load("build")
grade = _load("grade")

#: chapter -> (question, text of the instructor's solution, a wrong approach replacing it)
WRONG = {
    # Fig. S1 setting C computed from setting A's fluxes (the weights do not transfer)
    "01_toy_rnn_w": ("q4", "v_C = figs1_fluxes(0.9, 0.6)", "v_C = figs1_fluxes(1.0, 0.5)"),
    # succinate added to the default medium, glucose left open
    "02_rnn_solvers": ("q4", '"EX_glc__D_e": 0.0, "EX_succ_e": 10.0', '"EX_succ_e": 10.0'),
    # ANN SV trained twice with the default mass-balance weight instead of 0 and 1
    "03_amn_training": ("q4", "sv=lam,", "sv=1.0,"),
    # every one of the 38 uptakes opened at 10, not only the compounds present
    "04_reservoir": ("q4", "present * 10.0", "np.full(len(present), 10.0)"),
    # anaerobic growth divided by the aerobic wild type
    "05_pinn_fitness": ("q4", "/ mu_anaerobic", "/ mu_aerobic"),
    # the reverse reaction written without D
    "06_crnn": ("q4", "E -> B + D, k = 0.05", "E -> B, k = 0.05"),
    # infeasible deletions (growth NaN) dropped instead of recorded as fitness 0
    "07_own_data": ("q4", 'screen = screen.fillna({"growth": 0.0})', "screen = screen.dropna()"),
}


def chapter_cell(chapter: str) -> str:
    """The Colab install cell of the chapter notebook."""
    cells = json.loads((ROOT / "notebooks" / f"{chapter}.ipynb").read_text())["cells"]
    return "".join(next(c for c in cells if c["cell_type"] == "code")["source"])


def check_problem_set(chapter: str, tmp_path: Path) -> None:
    """Build one problem set and grade its solution, untouched and wrong-answer notebooks."""
    master = build.masters([chapter])[chapter]
    paths = build.build_one(chapter, master, tmp_path / "build")
    questions = build.questions(master)
    manual = [q for q in questions if q["manual"]]
    auto = {q["name"]: q["points"] for q in questions if not q["manual"]}
    assert len(questions) >= 4 and manual and len(auto) >= 3

    # student side: the chapter's Colab cell, public tests only, no solution (build_one checked
    # the solution lines); the instructor notebook carries the model answers and rubrics
    student = json.loads(paths["student"].read_text())
    code = [c for c in student["cells"] if c["cell_type"] == "code"]
    assert "".join(code[0]["source"]) == chapter_cell(chapter)
    public = sorted(p.name for p in (paths["student"].parent / "tests").glob("*.py"))
    assert public == sorted(f"{q}.py" for q in auto)
    with zipfile.ZipFile(paths["handout"]) as zf:
        assert sorted(zf.namelist()) == sorted(
            [paths["student"].name] + [f"tests/{p}" for p in public]
        )
    with zipfile.ZipFile(paths["autograder"]) as zf:
        for q in auto:
            text = zf.read(f"tests/{q}.py").decode()
            n_hidden = text.count("hidden=True")
            assert n_hidden >= 1 and text.count("hidden=False") >= 1, q
            student_text = (paths["student"].parent / "tests" / f"{q}.py").read_text()
            assert "hidden=True" not in student_text
    instructor = paths["instructor"].read_text()
    assert instructor.count("Rubric") >= len(manual) and "Model answer" in instructor

    # grading: solutions, untouched student notebook, one wrong answer; one CSV
    subs = tmp_path / "submissions"
    subs.mkdir()
    shutil.copy(paths["instructor"], subs / "solution.ipynb")
    shutil.copy(paths["student"], subs / "untouched.ipynb")
    question, right, wrong = WRONG[chapter]
    text = paths["instructor"].read_text()
    right_json, wrong_json = json.dumps(right)[1:-1], json.dumps(wrong)[1:-1]
    assert text.count(right_json) == 1, f"{right!r} must occur once in the solution"
    (subs / "wrong.ipynb").write_text(text.replace(right_json, wrong_json))
    rows = grade.grade_folder(paths["autograder"], subs, jobs=1)
    grade.write_csv(rows, tmp_path / "grades.csv")
    with open(tmp_path / "grades.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["student", "question", "points", "total"]
    got = {(r["student"], r["question"]): (r["points"], float(r["total"])) for r in table}
    for q, pts in auto.items():
        assert got[("solution", q)] == (str(pts), pts), f"solution loses points on {q}"
        assert got[("untouched", q)] == ("0.0", pts), f"untouched notebook scores on {q}"
        expected = "0.0" if q == question else str(pts)
        assert got[("wrong", q)] == (expected, pts), f"wrong answer to {question}: {q}"
    for q in manual:
        assert got[("solution", q["name"])] == ("", q["points"])
    total = sum(auto.values())
    assert got[("solution", "autograded total")] == (str(total), total)
    assert got[("wrong", "autograded total")] == (str(total - auto[question]), total)


def test_csv_rows_shape():
    questions = [
        {"name": "q1", "points": 3.0, "manual": True},
        {"name": "q2", "points": 4.0, "manual": False},
        {"name": "q3", "points": 2.0, "manual": False},
    ]
    rows = grade.rows_for("ana", {"q2": (4.0, 4.0)}, questions)  # q3 missing: 0 of 2
    assert [(r["question"], r["points"], r["total"]) for r in rows] == [
        ("q1", "", 3.0),
        ("q2", 4.0, 4.0),
        ("q3", 0.0, 2.0),
        ("autograded total", 4.0, 6.0),
    ]


def test_every_chapter_has_a_problem_set_and_links_it():
    chapters = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert sorted(build.masters()) == chapters
    assert set(WRONG) == set(chapters)
    for chapter in chapters:
        cells = json.loads((ROOT / "notebooks" / f"{chapter}.ipynb").read_text())["cells"]
        last = "".join(cells[-1]["source"])
        assert cells[-1]["cell_type"] == "markdown" and "instructors" in last, chapter
        assert re.search(rf"assignments/{chapter}/ps\d\d\.ipynb", last), chapter
    page = (ROOT / "book" / "instructors.md").read_text()
    assert "make assignments" in page and "assignments/grade.py" in page
    assert "book/instructors" in (ROOT / "_toc.yml").read_text()


@pytest.mark.slow
@pytest.mark.parametrize(
    "chapter", ["01_toy_rnn_w", "02_rnn_solvers", "03_amn_training", "07_own_data"]
)
def test_problem_set(chapter, tmp_path):
    check_problem_set(chapter, tmp_path)
