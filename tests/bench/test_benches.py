"""Benchmarks cannot rot: each one's --tiny mode runs as a real subprocess and prints its results.

A tiny run takes seconds and proves nothing about speed (no figure is asserted); it proves that the
benchmark still runs against today's code, end to end, through the same paths as its full run.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from workbench.processes import ROOT

BENCH = ROOT / "bench"
# What each bench prints once it got to its results (its last part's lines), one pattern a line.
RESULT_LINES = {
    "ingest.py": [r"^baseline \(1 process\) .* img/s", r"^product \(fast_jpeg=True\) .* ratio",
                  r"^product \(fast_jpeg=False\) .* ratio"],
    "train_overhead.py": [r"^  lenet run 1: bare .* backend", r"^  mlp run 1: bare .* backend",
                          r"^lenet +\d+ +\d+ +\d\.\d{3}", r"^mlp +\d+ +\d+ +\d\.\d{3}"],
    "train_overhead_jax.py": [r"^  lenet run 1: bare .* backend", r"^  mlp run 1: bare .* backend",
                              r"^lenet +\d+ +\d+ +\d\.\d{3}", r"^mlp +\d+ +\d+ +\d\.\d{3}",
                              r"^accuracy jax +lenet 1 epochs: val accuracy", r"^accuracy torch lenet 1 epochs: val accuracy"],
    "inference.py": [r"^lenet 1x28x28 +\(export max abs diff", r"^onnxruntime +[\d.]+ ", r"^onnxruntime / eager"],
    "augment.py": [r"^lenet .* augmentation costs", r"^  all together +batched .*x$",
                   r"^  hsv +batched", r"^  rotate_degrees 25 +validation .* rotated"],
    "gpu.py": [r"^  bare fp32 +[\d.]+ images/s", r"^  backend fp32 +[\d.]+ images/s",
               r"^  backend / bare, fp32", r"^  1 (process|GPU): +[\d.]+ images/s",
               r"^  2 (processes|GPUs): +[\d.]+ images/s"],
    "upload_memory.py": [r"^spooled to disk .* -> 400 .* growth", r"^old: in memory .* -> 400 .* growth"],
    "scale.py": [r"^\[sqlite\] fill: ", r"^\[sqlite\] GET /api/v1/jobs/ +median .* p95",
                 r"^\[sqlite\] GET metrics, cut anew each time +median .* p95"],
    "compare_load.py": [r"^fill: ", r"^GET /compare/ \(HTML\) +median .* p95",
                        r"^Chromium(: navigation to charts drawn +median| skipped)"],
    "live_latency.py": [r"^\[embedded\] embedded .* \d+ points over .* p95"],
    "sweep_asha.py": [r"^without pruning: done, 2 trials", r"^with ASHA: done, 2 trials", r"^ASHA trained "],
    "live_fanout.py": [r"^\[embedded\] +2 clients: \d+ points each", r"burst of 5 \(sessions\) within 0\.2 s: latency ms"],
    "classify_serving.py": [r"^A new, 1 jobs training +\d+ requests: p50 ", r"^A old, cold .* p50 ",
                            r"^A old, busy: ", r"^B one at a time +direct 4 clients: \d+ images/s",
                            r"^B HTTP +batching / one at a time: "],
    "segmentation.py": [r"^16 generated .* street scenes, 11 classes", r"^network unet \(adam lr 0\.001, batch 8\), 1 epochs, ",
                        r"^last: val pixel accuracy [\d.]+  val mean IoU [\d.]+$"],
    "detection.py": [r"^16 generated 48x48 digit scenes \(\+8 val\), 3 classes", r"^network centernet \(adamw lr 0\.002, batch 8, cosine\), 1 epochs, ",
                     r"^last: val mAP@0\.5 [\d.]+  val mAP@0\.5:0\.95 [\d.]+$", r"^per class AP@0\.5 \(last\): digit_0 [\d.]+"],
    "storage.py": [r"^  run 1: local +\d+ samples/s +s3 +\d+ samples/s", r"^training lenet 1 epochs: .* s3/local medians \d\.\d{3}",
                   r"^first fetch of a [\d.]+ MB dataset \(48 objects\): store [\d.]+ MB/s +boto3 [\d.]+ MB/s +store/boto3"],
    "recovery.py": [r"^kill  1: job \d+ worker pid \d+", r"^  jobs finished by themselves \(done\) +\d/1",
                    r"^  kill -> training again \(s\)"],
}
# Benches whose tiny mode is not written yet, and why: each must still be named here or above.
NOT_YET: dict[str, str] = {}
# Settings of the surrounding test run: each bench makes its own data folder and settings.
_FOREIGN = ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "CELERY_BROKER_URL")


def bench_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN and not k.startswith("WORKBENCH_")}
    return {**env, "PYTHONUNBUFFERED": "1"}


def test_it_knows_every_bench() -> None:
    """A new bench without a tiny mode (or one named here that is gone) fails here, not in a year."""
    benches = {path.name for path in BENCH.glob("*.py") if not path.name.startswith("_")}  # _: helpers
    assert benches == set(RESULT_LINES) | set(NOT_YET)


@pytest.mark.parametrize("name", sorted(RESULT_LINES))
def test_it_runs_each_bench_tiny(name: str) -> None:
    done = subprocess.run([sys.executable, str(BENCH / name), "--tiny"], cwd=ROOT, env=bench_env(),
                          capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{name} --tiny exited {done.returncode}:\n{output[-4000:]}"
    missing = [pattern for pattern in RESULT_LINES[name] if not re.search(pattern, done.stdout, re.MULTILINE)]
    assert not missing, f"{name} --tiny did not print {missing}:\n{output[-4000:]}"
    if "device: CPU" in done.stdout:  # gpu.py without CUDA: it says what it skipped
        assert "Skipped:" in done.stdout
