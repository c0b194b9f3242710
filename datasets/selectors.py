"""Reads for datasets. Everything a user sees goes through `dataset_list`, so ownership holds."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from datasets.ingest.store import boxes_path, thumb_counts
from datasets.models import Dataset


def dataset_list(*, user: AbstractBaseUser) -> QuerySet[Dataset]:
    datasets = Dataset.objects.select_related("owner")
    return datasets if user.is_staff else datasets.filter(owner=user)


DATASET_ORDERING_CHOICES = ["created_at", "-created_at", "name", "-name"]


def dataset_list_filtered(*, user: AbstractBaseUser, status: str = "", search: str = "",
                          ordering: str = "") -> QuerySet[Dataset]:
    """The user's datasets for a list page; the id breaks ties, so pages are stable."""
    datasets = dataset_list(user=user)
    if status:
        datasets = datasets.filter(status=status)
    if search:
        datasets = datasets.filter(name__icontains=search)
    if ordering:
        datasets = datasets.order_by(ordering, "-pk" if ordering.startswith("-") else "pk")
    return datasets


def dataset_get(*, user: AbstractBaseUser, pk: int) -> Dataset:
    """The dataset if the user may see it; anyone else's is a 404, never a 403."""
    return get_object_or_404(dataset_list(user=user), pk=pk)


def dataset_files(dataset: Dataset) -> Path:
    """The folder of a ready dataset's arrays, thumbnails and mean, on this host: fetched once from the
    store (WORKBENCH_STORAGE) into the host's cache when it is not here yet; the data folder itself otherwise."""
    if dataset.status != Dataset.Status.READY:
        return dataset.folder
    from workbench.storage import store

    return store().fetch_folder(dataset.folder)


def dataset_thumbnails(*, dataset: Dataset) -> dict[str, list[int]]:
    """For each class, the thumbnail numbers on disk (empty until the dataset is ready)."""
    if dataset.status != Dataset.Status.READY:
        return {name: [] for name in dataset.classes}
    counts = thumb_counts(dataset_files(dataset), len(dataset.classes))
    return {name: list(range(n)) for name, n in zip(dataset.classes, counts)}


def dataset_count_rows(*, dataset: Dataset) -> list[dict[str, object]]:
    """One row per class: its count in each split and in all."""
    counts = dataset.class_counts or {}
    rows: list[dict[str, object]] = []
    for name in dataset.classes:
        row = {split: counts.get(split, {}).get(name, 0) for split in ("train", "val", "test")}
        rows.append({"name": name, **row, "total": sum(row.values())})
    return rows


SAMPLES_PER_SPLIT = 6


def dataset_pixel_rows(*, dataset: Dataset) -> list[dict[str, object]]:
    """Segmentation: one row per class, its colour and its share of the labelled pixels of each split (%)."""
    shares = dataset.class_pixels or {}
    colours = dataset.colormap or {}
    return [{"name": name, "index": i, "colour": "#{:02x}{:02x}{:02x}".format(*colours.get(name, (0, 0, 0))),
             **{split: 100 * shares.get(split, {}).get(name, 0.0) for split in ("train", "val", "test")}}
            for i, name in enumerate(dataset.classes)]


def dataset_samples(*, dataset: Dataset) -> dict[str, list[int]]:
    """Segmentation and detection: the first image indices of each split that has images, for the explore page."""
    counts = dataset.split_counts or {}
    return {split: list(range(min(SAMPLES_PER_SPLIT, counts.get(split, 0))))
            for split in ("train", "val", "test") if counts.get(split)}


def dataset_box_rows(*, dataset: Dataset) -> list[dict[str, object]]:
    """Detection: one row per class, its colour and its boxes in each split and in all."""
    counts = dataset.box_counts or {}
    rows: list[dict[str, object]] = []
    for i, (name, colour) in enumerate(zip(dataset.classes, dataset.class_colours)):
        row = {split: counts.get(split, {}).get(name, 0) for split in ("train", "val", "test")}
        rows.append({"name": name, "index": i, "colour": "#{:02x}{:02x}{:02x}".format(*colour), **row,
                     "total": sum(row.values())})
    return rows


BOX_SIZES_PER_CLASS = 5000


def dataset_box_sizes(*, dataset: Dataset) -> dict[str, dict[str, list[float]]]:
    """Detection: each class's box widths and heights in the stored images' pixels, over every split (at
    most BOX_SIZES_PER_CLASS a class, a seeded sample beyond that), for the size histogram."""
    folder = dataset_files(dataset)
    found = [np.load(path) for split in ("train", "val", "test") if (path := boxes_path(folder, split)).exists()]
    rows = np.concatenate([f.reshape(-1, 6) for f in found]) if found else np.zeros((0, 6), dtype=np.float32)
    sizes = {}
    for i, name in enumerate(dataset.classes):
        mine = rows[rows[:, 0] == i]
        if len(mine) > BOX_SIZES_PER_CLASS:
            mine = mine[np.sort(np.random.default_rng(0).choice(len(mine), BOX_SIZES_PER_CLASS, replace=False))]
        sizes[name] = {"width": np.round(mine[:, 3] - mine[:, 1], 2).tolist(),
                       "height": np.round(mine[:, 4] - mine[:, 2], 2).tolist()}
    return sizes
