"""The package's layout (README, "Layout"): the library never imports the paper's experiments.

``amnlib/experiments/`` holds what is specific to the paper (datasets, sizes, reference numbers,
``run()``); every other module must work on any network and data set, so none of them may
import it, except the command line, which runs ``amnlib reproduce``.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "amnlib"
ALLOWED = {"cli.py"}


def imported_modules(source: str, package: tuple[str, ...]) -> list[str]:
    """Dotted names of everything ``source`` imports (``from a import b`` gives ``a.b``);
    relative imports are resolved against ``package`` (e.g. ``("amnlib", "solvers")``)."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = [node.module] if node.module else []
            if node.level:
                base = [*package[: len(package) - node.level + 1], *base]
            names += [".".join([*base, a.name]) for a in node.names]
    return names


def experiment_imports(path: Path) -> list[str]:
    """``"file:module"`` for each import of ``amnlib.experiments`` in ``path``."""
    package = path.parent.relative_to(PACKAGE.parent).parts
    names = imported_modules(path.read_text(encoding="utf-8"), package)
    return [f"{path.name}:{n}" for n in names if n.startswith("amnlib.experiments")]


def test_library_does_not_import_the_experiments():
    library = [p for p in PACKAGE.rglob("*.py")
               if "experiments" not in p.relative_to(PACKAGE).parts and p.name not in ALLOWED]
    assert len(library) > 30
    assert [hit for p in sorted(library) for hit in experiment_imports(p)] == []
    assert experiment_imports(PACKAGE / "cli.py")  # the one exception, seen by the check


def test_the_check_sees_every_form_of_import():
    source = ("from amnlib.experiments import reservoir\nimport amnlib.experiments.crnn\n"
              "from ..experiments import amn\nfrom . import toy_rnnw\n")
    names = imported_modules(source, ("amnlib", "solvers"))
    assert [n for n in names if n.startswith("amnlib.experiments")] == [
        "amnlib.experiments.reservoir", "amnlib.experiments.crnn", "amnlib.experiments.amn"]
    assert imported_modules("from . import toy_rnnw\n", ("amnlib", "experiments")) == [
        "amnlib.experiments.toy_rnnw"]
