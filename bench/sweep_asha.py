"""What ASHA saves: the same random search on the example digits with and without early stopping.

    .venv/bin/python bench/sweep_asha.py [--trials 10] [--epochs 4] [--seed 1] [--batch-size 32] [--tiny]

In one temporary data folder on the embedded default (as bench/recovery.py: migrate, a user,
`manage.py serve` with one worker running one job at a time, the digits ingested by it), two sweeps
of LeNet with the same random search (the same seed, so the same learning rates, log-uniform
1e-5..0.5, and optimizers sgd/adam, in the same order), one trial at a time: first without early
stopping, then with ASHA (SuccessiveHalvingPruner, grace 1 epoch, reduction factor 3). For each it
prints every trial (its settings, how it ended, epochs trained, best val accuracy), then the epochs
trained in all, the sweep's wall time and its best val accuracy; last the epochs ASHA saved and the
accuracy it lost (or gained). Exit status 0 either way: the figures are the result.
--tiny: 2 trials of 1 epoch at batch 128: a check that the benchmark still works (tests/bench), not a figure.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from recovery import environment, ingest_digits, make_owner, migrate, setup_django, start_serve, stop_serve

from workbench.processes import free_port


def run_sweep(owner: Any, dataset: Any, args: argparse.Namespace, asha: bool) -> dict[str, Any]:
    from sweeps.models import Sweep
    from sweeps.selectors import sweep_dict
    from sweeps.services import SweepSpec, sweep_create

    search = {"method": "random", "trials": args.trials, "seed": args.seed,
              "space": {"learning_rate": {"low": 1e-5, "high": 0.5, "log": True},
                        "optimizer": {"choices": ["sgd", "adam"]}}}
    early = ({"method": "asha", "metric": "val_accuracy", "mode": "max", "grace_epochs": 1, "reduction_factor": 3}
             if asha else None)
    spec = SweepSpec(name="with ASHA" if asha else "without pruning", network="lenet",
                     base={"epochs": args.epochs, "batch_size": args.batch_size, "seed": 0}, search=search,
                     max_concurrent=1, early_stopping=early)
    start = time.monotonic()
    sweep = sweep_create(owner=owner, dataset=dataset, spec=spec)
    while Sweep.objects.get(pk=sweep.pk).is_active:
        time.sleep(0.5)
    wall = time.monotonic() - start
    return {**sweep_dict(sweep=Sweep.objects.get(pk=sweep.pk)), "wall": wall}


def report(result: dict[str, Any]) -> tuple[float, float]:
    print(f"\n{result['name']}: {result['status']}, {len(result['jobs'])} trials, {result['wall']:.0f} s")
    for job in sorted(result["jobs"], key=lambda j: j["number"]):
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in job["params"].items())
        ended = job["status"] + (f" ({job['stop_reason']})" if job["stop_reason"] else "")
        value = job["best"].get("val_accuracy")
        print(f"  #{job['number']:<2} {params:<40} {ended:<26} epochs {job['epoch']:4.1f}  "
              f"best val accuracy {'–' if value is None else f'{value:.4f}'}")
    epochs = sum(job["epoch"] for job in result["jobs"])
    best = max((job["best"].get("val_accuracy") or 0.0) for job in result["jobs"])
    print(f"  epochs trained {epochs:.1f}, best val accuracy {best:.4f}")
    return epochs, best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--tiny", action="store_true", help="seconds, not a figure: a check that it still runs")
    args = parser.parse_args()
    if args.tiny:
        args.trials, args.epochs, args.batch_size = 2, 1, 128
    with tempfile.TemporaryDirectory(prefix="workbench-bench-sweep-") as data_dir:
        port = free_port()
        env = environment(data_dir, port)
        migrate(env)
        setup_django(env)
        serve = start_serve(env, Path(data_dir) / "serve.log", port)
        try:
            owner = make_owner()
            dataset = ingest_digits(owner)
            plain = report(run_sweep(owner, dataset, args, asha=False))
            pruned = report(run_sweep(owner, dataset, args, asha=True))
        finally:
            stop_serve(serve)
    saved = plain[0] - pruned[0]
    print(f"\nASHA trained {pruned[0]:.1f} epochs against {plain[0]:.1f}: {saved:.1f} saved "
          f"({saved / max(plain[0], 1e-9):.0%}); best val accuracy {pruned[1]:.4f} against {plain[1]:.4f} "
          f"({pruned[1] - plain[1]:+.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
