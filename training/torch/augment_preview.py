"""The worker's side of the augmentation preview: training images through the training's Augmenter.

The images are changed by the same `Augmenter` (and the same mean subtraction) that training
applies to its batches, seeded the way a job seeds it, so what the form shows is what a job draws.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from datasets.ingest.store import open_split, png_data_url
from datasets.models import Dataset
from datasets.selectors import dataset_files
from training.augmentation import augmentation_parse
from training.torch.augment import Augmenter, mean_to_subtract

CPU = torch.device("cpu")


def preview_on_worker(*, dataset_id: int, augmentation: dict[str, Any], seed: int, count: int) -> dict[str, Any]:
    dataset = Dataset.objects.get(pk=dataset_id)
    spec = augmentation_parse(augmentation, channels=dataset.channels)
    folder = dataset_files(dataset)
    images, labels = open_split(folder, "train")
    index = sample_index(len(images), count, seed)
    originals = torch.from_numpy(np.asarray(images[index]))
    augmented = Augmenter(spec, seed, CPU)(originals.clone())
    mean = mean_to_subtract(spec.mean, torch.from_numpy(np.load(folder / "mean.npy")))
    return {"seed": seed, "images": [
        {"label": dataset.classes[int(labels[i])], "original": png_data_url(originals[k].numpy()),
         "augmented": png_data_url(to_uint8(augmented[k])), "network": png_data_url(network_view(augmented[k], mean))}
        for k, i in enumerate(index)]}


def sample_index(total: int, count: int, seed: int) -> np.ndarray:
    """`count` distinct training images, in file order, drawn from `seed` (another seed, another sample)."""
    return np.sort(np.random.default_rng(seed).choice(total, size=min(count, total), replace=False))


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return x.mul(255).round_().clamp_(0, 255).to(torch.uint8).numpy()


def network_view(x: torch.Tensor, mean: torch.Tensor) -> np.ndarray:
    """What the network is given (pixels in 0..1 less mean / 255, as `train_input`), shown with -1..1
    spread over black..white: mid-grey is 0."""
    return to_uint8((x - mean / 255.0 + 1) / 2)
