"""Grade a folder of submitted notebooks offline, without Docker, into one CSV.

Every ``*.ipynb`` in the folder is one student (the file name without ``.ipynb`` is the student
column). Each notebook is executed from the top in a fresh kernel of this Python environment
and scored by the autograder archive's public and hidden tests (``otter run``'s grading, which
needs no container). The CSV has one row per student and question:

    student,question,points,total

``points`` is the score earned and ``total`` the question's maximum; manually graded questions
get an empty ``points`` for the instructor to fill in, and a last row per student,
``question = "autograded total"``, sums the autograded ones.

Usage (``make assignments`` first):

    python assignments/grade.py _build/assignments/06_crnn/ps06-autograder.zip submissions/ \
        --csv grades.csv --jobs 2
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def question_list(autograder: Path) -> list[dict]:
    """``[{"name", "points", "manual"}]`` from the archive's ``questions.json`` (written by
    ``build.py``); ``[]`` for an archive without it."""
    with zipfile.ZipFile(autograder) as zf:
        if "questions.json" not in zf.namelist():
            return []
        return json.loads(zf.read("questions.json"))


def grade_notebook(submission: Path, autograder: Path) -> dict[str, tuple[float, float]]:
    """Score one notebook: ``{question: (points, total)}`` for the autograded questions.

    A notebook that cannot be run at all scores 0 on every question."""
    from otter.api import grade_submission

    results = grade_submission(str(submission), str(autograder), quiet=True)
    return {
        name: (float(results.get_result(name).score), float(results.get_result(name).possible))
        for name in results.test_files
    }


def rows_for(
    student: str, scores: dict[str, tuple[float, float]], questions: list[dict]
) -> list[dict]:
    """CSV rows of one student, in the order of the problem set's questions."""
    names = [q["name"] for q in questions] or sorted(scores)
    manual = {q["name"]: q["points"] for q in questions if q["manual"]}
    rows = []
    for name in names:
        if name in manual:
            rows.append({"student": student, "question": name, "points": "", "total": manual[name]})
        else:
            points, total = scores.get(
                name, (0.0, next((q["points"] for q in questions if q["name"] == name), 0.0))
            )
            rows.append({"student": student, "question": name, "points": points, "total": total})
    auto = [r for r in rows if r["points"] != ""]
    rows.append(
        {
            "student": student,
            "question": "autograded total",
            "points": sum(r["points"] for r in auto),
            "total": sum(r["total"] for r in auto),
        }
    )
    return rows


def _grade_job(args: tuple[Path, Path]) -> dict[str, tuple[float, float]]:
    return grade_notebook(*args)


def grade_folder(autograder: Path, folder: Path, jobs: int = 1) -> list[dict]:
    """Grade every ``*.ipynb`` of ``folder`` (``jobs`` at a time); returns the CSV rows."""
    autograder, folder = Path(autograder).resolve(), Path(folder)
    if not autograder.is_file():
        raise FileNotFoundError(f"autograder archive {autograder} not found (make assignments)")
    subs = sorted(folder.glob("*.ipynb"))
    if not subs:
        raise FileNotFoundError(f"no .ipynb submission in {folder}")
    questions = question_list(autograder)
    jobs_args = [(p.resolve(), autograder) for p in subs]
    if jobs <= 1:
        scores = [_grade_job(a) for a in jobs_args]
    else:  # each grading chdirs and starts its own kernel: one process per notebook
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            scores = list(pool.map(_grade_job, jobs_args))
    rows = []
    for path, sc in zip(subs, scores, strict=True):
        rows += rows_for(path.stem, sc, questions)
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["student", "question", "points", "total"])
        w.writeheader()
        w.writerows(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("autograder", type=Path, help="psNN-autograder.zip from make assignments")
    ap.add_argument("folder", type=Path, help="folder of submitted .ipynb files")
    ap.add_argument("--csv", type=Path, default=Path("grades.csv"))
    ap.add_argument(
        "--jobs",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="notebooks graded at once (one kernel each)",
    )
    args = ap.parse_args(argv)
    rows = grade_folder(args.autograder, args.folder, args.jobs)
    write_csv(rows, args.csv)
    totals = [r for r in rows if r["question"] == "autograded total"]
    for r in totals:
        print(f"{r['student']}: {r['points']:g} / {r['total']:g}", file=sys.stderr)
    print(f"wrote {args.csv} ({len(totals)} students)", file=sys.stderr)


if __name__ == "__main__":
    main()
