"""scikit-learn's digits ingested into a ready Dataset, in this process: the data the training-overhead
benches (train_overhead.py, train_overhead_jax.py) share. A helper, not a bench (tests/bench skips `_` files)."""
from __future__ import annotations

import os
from pathlib import Path

from datasets.example import write_digits
from datasets.ingest.pipeline import IngestOptions, run_ingest
from datasets.models import Dataset


def ingest_digits(owner, size: int, scratch: Path, seed: int = 0) -> Dataset:  # type: ignore[no-untyped-def]
    """Digits at `size` x `size` grayscale, 10% val and 10% test, written under `scratch` first."""
    dataset = Dataset.objects.create(
        owner=owner, name="digits", source=Dataset.Source.EXAMPLE, source_name="digits",
        image_width=size, image_height=size, channels=1, resize_mode="squash",
        val_percent=10, test_percent=10, seed=seed)
    source = scratch / "digits-src"
    write_digits(source)
    dataset.folder.mkdir(parents=True, exist_ok=True)
    options = IngestOptions(width=size, height=size, channels=1, resize_mode="squash",
                            val_percent=10, test_percent=10, seed=seed)
    result = run_ingest(source, dataset.folder, options, max_pixels=40_000_000, workers=os.cpu_count() or 1)
    Dataset.objects.filter(pk=dataset.pk).update(
        status=Dataset.Status.READY, progress=1.0, classes=result.classes, split_counts=result.split_counts,
        class_counts=result.class_counts)
    dataset.refresh_from_db()
    return dataset
