"""`manage.py push_to_store`: put what a one-host data folder holds into the S3 store, once, when a
workbench moves from WORKBENCH_STORAGE=local to `s3://...` (run it on the old host with the new setting).

Every ready dataset's arrays, thumbnails and mean, every job's snapshots, model files, exports,
compressed models and batch results, and every pretrained model go up under their names; a file the
store already holds at the same size is skipped, so running it again after a failure goes on where
it stopped. Nothing local is removed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from datasets.models import Dataset
from jobs.models import TrainingJob
from pretrained.models import PretrainedModel
from workbench.files import TEMPORARY_MARK
from workbench.processes import store_checked
from workbench.storage import S3Store, store

SKIPPED = ("upload", "extracted")  # an ingest's sources: gone once it ended


class Command(BaseCommand):
    help = "Put the data folder's datasets, jobs and pretrained models into the S3 store (WORKBENCH_STORAGE)."

    def handle(self, *args: Any, **options: Any) -> None:
        current = store()
        if not isinstance(current, S3Store):
            raise CommandError("WORKBENCH_STORAGE is `local`: set it to the s3://bucket/prefix to push to.")
        store_checked()
        folders = ([d.folder for d in Dataset.objects.filter(status=Dataset.Status.READY)]
                   + [j.folder for j in TrainingJob.objects.all()] + [m.folder for m in PretrainedModel.objects.all()])
        sent = skipped = size = 0
        for folder in folders:
            if not folder.is_dir():
                continue
            held = {name: summary.size for name, summary in current.listing(folder).items()}
            for path in sorted(p for p in folder.rglob("*") if _ours(p, folder)):
                if held.get(path.relative_to(folder).as_posix()) == path.stat().st_size:
                    skipped += 1
                    continue
                current.publish(path)
                sent, size = sent + 1, size + path.stat().st_size
        self.stdout.write(f"pushed {sent} files ({size / 1e6:.1f} MB) of {len(folders)} folders to "
                          f"{current.description}; {skipped} were there already")


def _ours(path: Path, folder: Path) -> bool:
    parts = path.relative_to(folder).parts
    return path.is_file() and TEMPORARY_MARK not in path.name and not parts[0].startswith(SKIPPED)
