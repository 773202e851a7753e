"""Problem sets 4-6 of the course kit (see test_assignments.py): a second file so that
``pytest -n 2 --dist loadfile`` grades them beside problem sets 1-3."""

import pytest
from test_assignments import check_problem_set


@pytest.mark.slow
@pytest.mark.parametrize("chapter", ["04_reservoir", "05_pinn_fitness", "06_crnn"])
def test_problem_set(chapter, tmp_path):
    check_problem_set(chapter, tmp_path)
