"""Cost of the flux PINN's steady-state projection and of one training step.

Run from the repository root: ``.venv/bin/python benchmarks/bench_pinn.py``.
Writes ``benchmarks/results/pinn.json``: on textbook (E. coli core, 154 split fluxes), the
time of :func:`amnlib.pinn.project_steady_state` (forward + backward) per genotype for batches of
real double-deletion knockout masks, against a dense reference (``scipy.linalg.null_space`` of
``[S; E_ko]`` per genotype, forward only), and the time of one Adam step of the PINN with and
without the projection (batch 128, one CPU thread for torch and BLAS), with the machine's
load average (the numbers are wall-clock and the CPU may be shared).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one thread for every library: a fair, shared-CPU timing

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if not os.environ.get("AMNLIB_DATA_DIR") and (ROOT.parent / "shared" / "data").is_dir():
    os.environ["AMNLIB_DATA_DIR"] = str(ROOT.parent / "shared" / "data")

import torch  # noqa: E402
from scipy.linalg import null_space  # noqa: E402

from amnlib import deletions as D  # noqa: E402
from amnlib import pinn as P  # noqa: E402
from amnlib.network import MetabolicNetwork  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "pinn.json"


def best_of(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    torch.set_num_threads(1)
    net = MetabolicNetwork.load("textbook")
    genes = D.gene_ids(net)
    pairs = D.pairs(genes)[::10]
    ko = torch.as_tensor(D.knockout_mask(net, pairs), dtype=torch.float32)
    basis = torch.as_tensor(null_space(net.S), dtype=torch.float64)
    rng = np.random.default_rng(0)
    out: dict = {"machine": platform.platform(), "load_average": os.getloadavg()[0],
                 "n_split": net.n, "null_space_dim": int(basis.shape[1]), "projection": {}}
    for batch in (32, 128, 512):
        k = ko[:batch]
        u = torch.as_tensor(rng.uniform(0, 5, (batch, net.n)), dtype=torch.float32)
        u.requires_grad_(True)

        def step(u=u, k=k):
            P.project_steady_state(u, k, basis).sum().backward()

        t = best_of(step)
        out["projection"][str(batch)] = {"seconds": t, "us_per_genotype": 1e6 * t / batch}
    k = ko[:32].numpy()
    u = rng.uniform(0, 5, (32, net.n))

    def dense():
        for i in range(32):
            Q = null_space(np.vstack([net.S, np.eye(net.n)[k[i] > 0]]))
            Q @ (Q.T @ u[i])

    out["dense_reference_us_per_genotype"] = 1e6 * best_of(dense, 3) / 32
    physics = P.FluxPhysics(net, D.wild_type_growth(net))
    y = torch.rand(128)
    for project in (True, False):
        model = P.FluxPINN(net.n, basis, project=project)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        k = ko[:128]

        def train_step(model=model, opt=opt, k=k):
            v = model(k)
            terms = physics.terms(v, k, y)
            loss = sum(terms.values())
            opt.zero_grad()
            loss.backward()
            opt.step()

        out[f"train_step_ms_project_{project}"] = 1e3 * best_of(train_step, 10)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
