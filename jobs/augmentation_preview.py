"""The job form's augmentation preview: the web checks the spec, a worker runs the training's code."""
from __future__ import annotations

from typing import Any

from datasets.models import Dataset
from jobs.errors import JobInputError
from serving import client
from training.augmentation import AugmentationError, augmentation_parse

MAX_PREVIEW_IMAGES = 64


def augmentation_preview(*, dataset: Dataset, augmentation: object, seed: int, count: int) -> dict[str, Any]:
    """`count` training images of `dataset`, each original and as `augmentation` changes it with
    `seed`: {"seed", "images": [{"label", "original", "augmented", "network"}]} (PNG data URLs).

    JobInputError for a bad spec (naming its key) or a dataset that is not ready; ServingUnavailable
    when no serving worker answers."""
    if dataset.status != Dataset.Status.READY:
        raise JobInputError(f"The dataset '{dataset.name}' is not ready (status: {dataset.status}).", "dataset")
    try:
        spec = augmentation_parse(augmentation, channels=dataset.channels)
    except AugmentationError as exc:
        raise JobInputError(str(exc), "augmentation") from None
    return client.ask("jobs.augmentation_preview", dataset.pk, spec.as_dict(), seed, count)  # type: ignore[no-any-return]
