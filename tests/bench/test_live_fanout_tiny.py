"""bench/live_fanout.py cannot rot: its tiny mode runs end to end (figures are not asserted)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_live_fanout_bench_runs_in_its_tiny_mode() -> None:
    done = subprocess.run([sys.executable, "bench/live_fanout.py", "--tiny"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "   2 clients: " in done.stdout, done.stdout
    assert "burst of 5 (sessions) within 0.2 s: latency ms" in done.stdout, done.stdout
