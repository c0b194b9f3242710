"""Evaluate a split of the job's dataset with a snapshot; the result is stored for next time."""
from __future__ import annotations

import numpy as np

from jobs.errors import JobInputError
from jobs.models import TrainingJob
from results.models import Evaluation
from results.work import WorkFailed, claimed, done_snapshot, stored_or_new
from training.vision_tasks import vision_task

SPLITS = ("val", "test", "train")
BATCH = 256


def evaluation_start(*, job: TrainingJob, split: str, epoch: float | None = None) -> tuple[Evaluation, bool]:
    """The stored evaluation of this snapshot and split, or a new queued one. (evaluation, created)"""
    if split not in SPLITS:
        raise JobInputError(f"Choose a split: {', '.join(SPLITS)}.", "split")
    if not job.dataset.split_counts.get(split):
        raise JobInputError(f"The dataset's {split} split is empty; choose another split.", "split")
    snapshot = done_snapshot(job=job, epoch=epoch, action="evaluate")
    return stored_or_new(Evaluation, "results.evaluate", job=job, snapshot=snapshot, split=split)


def evaluation_run(*, evaluation_id: int) -> None:
    """On the worker: score every image of the split in batches, then compute the report."""
    from datasets.ingest.store import open_split
    from training.backends import backends

    with claimed(Evaluation, evaluation_id) as claim:
        if claim is None:
            return
        evaluation, progress, result = claim
        job = evaluation.job
        images, labels = open_split(job.dataset.folder, evaluation.split)
        if len(labels) == 0:
            raise WorkFailed(f"The {evaluation.split} split is empty.")
        backend = backends[job.backend]
        weights = job.folder / evaluation.snapshot.path
        probabilities = np.empty((len(labels), len(job.dataset.classes)), dtype=np.float32)
        for start in range(0, len(labels), BATCH):
            end = min(start + BATCH, len(labels))
            probabilities[start:end] = backend.infer(weights, np.asarray(images[start:end]))
            progress(end / len(labels))
        task = vision_task(job.dataset.task)
        result.update(task=task.name, **task.evaluation_report(probabilities, labels, job.dataset.classes))
        result["epoch"] = evaluation.snapshot.epoch
