from __future__ import annotations

import pytest


@pytest.fixture
def running_job(alice):  # type: ignore[no-untyped-def]
    """A job of alice's that is still running (no snapshot), on a small ready dataset."""
    from django.utils import timezone

    from datasets.models import Dataset
    from jobs.models import TrainingJob

    dataset = Dataset.objects.create(owner=alice, name="d", source="example", source_name="x", image_width=8,
                                     image_height=8, channels=3, resize_mode="squash", val_percent=10,
                                     test_percent=0, seed=0, status="ready", classes=["a", "b"],
                                     split_counts={"train": 9, "val": 1, "test": 0})
    return TrainingJob.objects.create(owner=alice, dataset=dataset, name="j", network="mlp", network_spec={},
                                      status="running", heartbeat_at=timezone.now())  # beating: no reaper takes it
