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


def test_generate_command(tmp_path, capsys):
    from amnlib.simulate import TrainingSet

    out = tmp_path / "sets" / "tb.npz"
    args = ["generate", "--model", "textbook", "--spec", "e_coli_core", "--size", "12",
            "--seed", "1", "--out", str(out), "--n-jobs", "1", "--no-cache", "--quiet"]
    assert main(args) == 0
    assert "12 samples" in capsys.readouterr().out
    ts = TrainingSet.load(out)
    assert ts.X.shape == (12, 20) and ts.Y.shape == (12, 154)
    assert json.loads(out.with_suffix(".json").read_text())["seed"] == 1
    assert main(["generate", "--model", "textbook", "--spec", "nope", "--out",
                 str(out), "--quiet"]) == 2
