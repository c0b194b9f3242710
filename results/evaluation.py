"""Evaluate a split of the job's dataset with a snapshot; the result is stored for next time."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from datasets.selectors import dataset_files
from jobs.errors import JobInputError
from jobs.models import TrainingJob
from results.models import Evaluation
from results.work import WorkFailed, claimed, done_snapshot, stored_or_new
from training.vision_tasks import vision_task
from workbench.storage import model_files

SPLITS = ("val", "test", "train")
BATCH = 256
OUTPUT_BYTES = 64 * 1024**2  # a batch's per-pixel probabilities, at most (one image is always allowed)


def evaluation_start(*, job: TrainingJob, split: str, epoch: float | None = None) -> tuple[Evaluation, bool]:
    """The stored evaluation of this snapshot and split, or a new queued one. (evaluation, created)"""
    if split not in SPLITS:
        raise JobInputError(f"Choose a split: {', '.join(SPLITS)}.", "split")
    if not job.dataset.split_counts.get(split):
        raise JobInputError(f"The dataset's {split} split is empty; choose another split.", "split")
    snapshot = done_snapshot(job=job, epoch=epoch, action="evaluate")
    return stored_or_new(Evaluation, "results.evaluate", job=job, snapshot=snapshot, split=split)


def evaluation_run(*, evaluation_id: int) -> None:
    """On the worker: score every image of the split in batches, then compute the vision task's report.
    The task tallies batch by batch (segmentation keeps no per-pixel probabilities), so a large split
    never has all its outputs in memory."""
    from training.backends import backends

    with claimed(Evaluation, evaluation_id) as claim:
        if claim is None:
            return
        evaluation, progress, result = claim
        job = evaluation.job
        task = vision_task(job.dataset.task)
        images, truth = _split(dataset_files(job.dataset), evaluation.split, task.truth_file)
        if len(truth) == 0:
            raise WorkFailed(f"The {evaluation.split} split is empty.")
        backend = backends[job.backend]
        weights = model_files(job.folder / evaluation.snapshot.path)
        tally = task.evaluation(job.dataset.classes, ignore_index=job.dataset.ignore_index)
        batch = batch_size(images.shape[1:], len(job.dataset.classes), per_pixel=truth.ndim > 1)
        for start in range(0, len(truth), batch):
            end = min(start + batch, len(truth))
            tally.add(backend.infer(weights, np.array(images[start:end])), np.asarray(truth[start:end]))
            progress(end / len(truth))
        result.update({**tally.report(), "task": task.name})
        result["epoch"] = evaluation.snapshot.epoch


def _split(folder: Path, split: str, truth_file: str) -> tuple[np.ndarray, np.ndarray]:
    """The split's images and what they are scored against (labels, or masks), memory-mapped read-only."""
    from datasets.ingest.store import images_path

    return (np.load(images_path(folder, split), mmap_mode="r"),
            np.load(folder / truth_file.format(split=split), mmap_mode="r"))


def batch_size(image_shape: tuple[int, ...], classes: int, *, per_pixel: bool) -> int:
    """Images per backend call: BATCH, fewer where one image's per-pixel probabilities are large
    (float32 (classes, H, W): 21 classes at 128x96 are 1 MB), so a batch stays near OUTPUT_BYTES."""
    if not per_pixel:
        return BATCH
    one = classes * int(np.prod(image_shape[1:])) * 4
    return max(1, min(BATCH, OUTPUT_BYTES // one))
