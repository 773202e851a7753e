"""The ``amnlib`` command line."""

import json
import subprocess
import sys

from amnlib.cli import main
from amnlib.experiments import EXPERIMENTS


def test_help_and_list(capsys):
    out = subprocess.run(
        [sys.executable, "-m", "amnlib.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "reproduce" in out
    assert main(["reproduce", "--list"]) == 0
    listed = capsys.readouterr().out
    for name in EXPERIMENTS:
        assert name in listed


def test_reproduce_network_json(tmp_path, capsys):
    path = tmp_path / "out" / "network.json"
    assert main(["reproduce", "network", "--fast", "--json", str(path)]) == 0
    table = capsys.readouterr().out
    assert "n_split" in table and "154" in table
    record = json.loads(path.read_text())
    assert record["textbook"]["n_split"] == record["paper"]["textbook"]["n_split"] == 154
    assert record["textbook"]["max_abs_Sv"] < 1e-6
    assert abs(record["textbook"]["growth"] - record["textbook"]["growth_cobrapy"]) < 1e-6


def test_unknown_experiment(capsys):
    assert main(["reproduce", "nope"]) == 2
    assert "known" in capsys.readouterr().err
