"""training.warm: loaded models stay loaded, bounded in bytes; a file written again is loaded again."""
from __future__ import annotations

import os
import threading

import numpy as np
import torch
from safetensors.torch import save_file

from training.torch.models import ModelCache
from training.warm import WarmCache, file_key


def test_a_warm_key_is_not_loaded_again():
    cache = WarmCache(capacity=100)
    loads = []

    for _ in range(3):
        assert cache.get("a", lambda: (loads.append("a") or "model a", 10)) == "model a"

    assert loads == ["a"] and cache.loads == 1 and cache.describe()[0]["hits"] == 2


def test_the_least_recently_used_go_first_once_over_capacity_in_bytes():
    cache = WarmCache(capacity=100)
    cache.get("a", lambda: ("A", 40), name="a")
    cache.get("b", lambda: ("B", 40), name="b")
    cache.get("a", lambda: ("A again", 40))  # a is now the most recent
    cache.get("c", lambda: ("C", 40), name="c")  # 120 > 100: b goes

    assert [m["name"] for m in cache.describe()] == ["c", "a"] and cache.nbytes == 80


def test_a_model_larger_than_the_capacity_is_used_and_not_kept():
    cache = WarmCache(capacity=10)

    assert cache.get("big", lambda: ("BIG", 11)) == "BIG"
    assert len(cache) == 0 and cache.get("big", lambda: ("BIG", 11)) == "BIG" and cache.loads == 2


def test_concurrent_first_requests_for_one_model_load_it_once():
    cache = WarmCache(capacity=100)
    gate = threading.Event()

    def slow_load() -> tuple[str, int]:
        gate.wait(5)
        return "model", 1

    threads = [threading.Thread(target=cache.get, args=("a", slow_load)) for _ in range(8)]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join()

    assert cache.loads == 1


def test_a_file_written_again_has_a_new_key(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(b"1")
    first = file_key(path)
    os.utime(path, ns=(1, 1))

    assert file_key(path) != first


def write_snapshot(folder, weight: float):  # type: ignore[no-untyped-def]
    """A one-layer classifier job folder, as training writes it (model.json, mean, a snapshot)."""
    import json

    spec = {"layers": [{"type": "flatten"}, {"type": "linear", "out_features": "num_classes"}]}
    (folder / "snapshots").mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(json.dumps({"network_spec": spec, "input_shape": [1, 2, 2], "classes": ["a", "b"]}))
    save_file({"mean": torch.zeros(1, 2, 2)}, folder / "mean.safetensors")
    path = folder / "snapshots" / "epoch_1.safetensors"
    from training.torch.build import build_model

    model = build_model(spec, (1, 2, 2), 2)
    save_file({k: torch.full_like(v, weight) for k, v in model.state_dict().items()}, path)
    return path


def test_the_torch_cache_answers_warm_counts_bytes_and_sees_a_snapshot_written_again(tmp_path):
    path = write_snapshot(tmp_path, 0.0)
    cache = ModelCache(capacity=1024**2, device="cpu")
    images = np.zeros((3, 1, 2, 2), dtype=np.uint8)

    first = cache.infer(path, images)
    cache.infer(path, images)
    assert cache.warm.loads == 1 and first.shape == (3, 2)
    held = cache.warm.describe()
    assert held[0]["bytes"] == (2 * 4 + 2) * 4 + 4 * 4, "the linear layer's weights and bias, and the mean"
    assert held[0]["name"].endswith("snapshots/epoch_1.safetensors")

    write_snapshot(tmp_path, 1.0)  # the same file written again (a resumed run rewrote the epoch)
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
    cache.infer(path, images)
    assert cache.warm.loads == 2
