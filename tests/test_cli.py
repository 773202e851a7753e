"""The ``amnlib`` command line."""

import json
import subprocess
import sys
from pathlib import Path

from amnlib import cli
from amnlib.cli import build_parser, main
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
    err = capsys.readouterr().err
    assert err.startswith("amnlib reproduce: error: unknown experiment 'nope'; known: ")
    assert len(err.strip().splitlines()) == 1


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """One bad input per command: (arguments, what its one-line error must say)."""
    missing = str(tmp / "missing.csv")
    return {
        "reproduce": (["reproduce", "nope"], "unknown experiment 'nope'"),
        "generate": (["generate", "--spec", "nope", "--out", str(tmp / "x.npz"), "--quiet"],
                     "nope"),
        "fit-pinn": (["fit-pinn", "--model", "textbook", "--fitness", missing, "--out",
                      str(tmp / "pinn"), "--quiet"], "missing.csv"),
        "fit-reservoir": (["fit-reservoir", "--model", "textbook", "--growth", missing,
                           "--out", str(tmp / "res"), "--quiet"], "missing.csv"),
        "predict": (["predict", "--model-dir", str(tmp / "no_model"), "--media", missing],
                    "no_model"),
        "discover-mechanism": (["discover-mechanism", "--data", missing, "--out",
                                str(tmp / "mech"), "--quiet"], "missing.csv"),
    }


def test_every_command_frames_a_bad_input_as_one_line(tmp_path, capsys):
    """Every subcommand: a bad input is one line ``amnlib <cmd>: error: ...`` on stderr, exit
    status 2, no traceback, nothing written."""
    cases = _bad_inputs(tmp_path)
    assert set(cases) == set(build_parser()._subparsers._group_actions[0].choices)
    for command, (args, says) in cases.items():
        assert main(args) == 2, command
        captured = capsys.readouterr()
        err = captured.err.strip()
        assert len(err.splitlines()) == 1, (command, err)
        assert err.startswith(f"amnlib {command}: error: ") and says in err, (command, err)
        assert "Traceback" not in err and not captured.out, command
    assert list(tmp_path.iterdir()) == []


def test_interrupt_is_one_line_and_130(monkeypatch, capsys):
    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_experiment", interrupted)
    assert main(["reproduce", "network", "--fast"]) == 130
    assert capsys.readouterr().err == "amnlib reproduce: interrupted\n"


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
