"""serving.batching: concurrent requests for one model run as one batch, each gets its own rows."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from serving.batching import Batcher


class SlowModel:
    """Answers each image's sum as its one output; takes `seconds` a call, and records each batch."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds, self.batches = seconds, []
        self.calls = threading.Lock()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        self.batches.append(len(images))
        time.sleep(self.seconds)
        return images.reshape(len(images), -1).sum(axis=1, keepdims=True)


def ask_at_once(batcher: Batcher, model: SlowModel, requests: list[np.ndarray], key: str = "m") -> list[np.ndarray]:
    answers: list[np.ndarray | None] = [None] * len(requests)
    start = threading.Barrier(len(requests))

    def ask(i: int) -> None:
        start.wait()
        answers[i] = batcher.run(key, requests[i], model)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers  # type: ignore[return-value]


def test_a_lone_request_runs_at_once_alone():
    model = SlowModel(0.0)
    batcher = Batcher(window=1.0, max_batch=64)

    started = time.monotonic()
    answer = batcher.run("m", np.ones((1, 1, 2, 2)), model)

    assert answer.tolist() == [[4.0]] and model.batches == [1]
    assert time.monotonic() - started < 0.5, "no window before a batch without company"


def test_fifty_concurrent_requests_run_in_a_few_batches_and_each_gets_its_own_answer():
    model = SlowModel(0.05)
    batcher = Batcher(window=0.002, max_batch=64)
    requests = [np.full((1, 1, 2, 2), i, dtype=np.uint8) for i in range(50)]

    answers = ask_at_once(batcher, model, requests)

    assert [a.tolist() for a in answers] == [[[4 * i]] for i in range(50)]
    assert sum(model.batches) == 50 and len(model.batches) <= 3, model.batches
    assert batcher.stats.requests == 50 and batcher.stats.largest == max(model.batches)


def test_a_batch_holds_at_most_max_batch_images():
    model = SlowModel(0.02)
    batcher = Batcher(window=0.0, max_batch=8)

    answers = ask_at_once(batcher, model, [np.full((2, 1, 1, 1), i) for i in range(20)])

    assert max(model.batches) <= 8 and sum(model.batches) == 40
    assert [a.ravel().tolist() for a in answers] == [[i, i] for i in range(20)]


def test_images_of_other_shapes_or_models_are_not_mixed():
    model = SlowModel(0.02)
    batcher = Batcher(window=0.0, max_batch=64)
    small, large = np.ones((1, 1, 2, 2)), np.ones((1, 1, 3, 3))

    answers = ask_at_once(batcher, model, [small, large, small, large])

    assert [a.tolist() for a in answers] == [[[4.0]], [[9.0]], [[4.0]], [[9.0]]]


def test_a_failing_batch_fails_each_of_its_requests_and_the_next_ones_still_run():
    batcher = Batcher(window=0.0, max_batch=64)

    def broken(images: np.ndarray) -> np.ndarray:
        raise FileNotFoundError("no weights")

    with pytest.raises(FileNotFoundError):
        batcher.run("m", np.ones((1, 1, 1, 1)), broken)
    assert batcher.run("m", np.ones((1, 1, 1, 1)), SlowModel(0.0)).tolist() == [[1.0]]


def test_a_model_that_answers_the_wrong_number_of_rows_fails_the_batch():
    batcher = Batcher(window=0.0, max_batch=64)

    with pytest.raises(RuntimeError, match="answered 1 rows for 2 images"):
        batcher.run("m", np.ones((2, 1, 1, 1)), lambda images: np.ones((1, 1)))


def test_the_web_sends_concurrent_requests_for_one_model_as_one_serving_request(monkeypatch, settings):
    """serving.client.infer: the web side's batcher, so fifty clients are a few messages, not fifty."""
    from serving import client

    settings.WORKBENCH_SERVING_BATCH_WINDOW_MS = 2
    monkeypatch.setattr(client, "_the_batcher", None)
    sent: list[int] = []

    def ask(name: str, backend: str, weights: str, *, images: np.ndarray, started: float) -> list[list[float]]:
        sent.append(len(images))
        assert time.monotonic() >= started
        time.sleep(0.05)  # the serving worker's round trip
        return [[float(image.sum())] for image in images]

    monkeypatch.setattr(client, "ask", ask)
    answers: list[np.ndarray | None] = [None] * 30
    barrier = threading.Barrier(30)

    def one(i: int) -> None:
        barrier.wait()
        answers[i] = client.infer("jobs.classify", "torch", "/w.safetensors", np.full((1, 1, 2, 2), i, dtype=np.uint8))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [a.tolist() for a in answers] == [[[4.0 * i]] for i in range(30)]
    assert sum(sent) == 30 and len(sent) <= 3, sent
