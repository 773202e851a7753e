"""Genome-scale AMN training function (issue 6, Table 1 last row), checked on a small network
with the same code path (the genome-scale numbers are in benchmarks/results/amn_genome.json)."""

import json

import numpy as np
import pytest
import torch

from amnlib.experiments.amn_genome import PAPER_GENOME, comparison_table, train_genome_amn


def test_train_genome_amn_learns_growth(textbook):
    torch.set_num_threads(1)
    res = train_genome_amn(textbook, "e_coli_core", size=300, test_size=100, epochs=25,
                           batch_size=20, lr=1e-2, ratio=0.5, device=torch.device("cpu"))
    assert res.n_train == 300 and res.n_test == 100 and res.architecture == "AMN-QP"
    assert res.layer_preset == "network"
    assert res.q2 > 0.8 and res.r2_train > 0.8  # biomass, held-out test media
    assert res.sv2 < 1e-6  # the projection step enforces S V = 0
    assert res.seconds_per_epoch > 0 and len(res.history.val_q2) == 6  # epochs 0,5,..,20, 24
    record = res.summary()
    assert json.loads(json.dumps(record, default=float))["q2"] == pytest.approx(res.q2)
    assert np.isfinite(record["val_q2_curve"]).all()
    assert "published_code_q2_qp" not in PAPER_GENOME  # no traceable source: removed
    table = comparison_table({"run": res, "record": record})
    assert list(table.index) == ["run", "record", "paper (iML1515, Table 1)"]
    assert table.loc["run", "q2"] == pytest.approx(res.q2) == table.loc["record", "q2"]
    assert table.loc["paper (iML1515, Table 1)", "q2"] == PAPER_GENOME["q2"]
