"""Reads for pretrained models and the compatibility report. Owner-only; staff see all."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from jobs.models import TrainingJob
from pretrained.models import PretrainedModel


def pretrained_list(*, user: AbstractBaseUser) -> QuerySet[PretrainedModel]:
    models = PretrainedModel.objects.select_related("owner")
    return models if user.is_staff else models.filter(owner=user)


def pretrained_get(*, user: AbstractBaseUser, pk: int) -> PretrainedModel:
    return get_object_or_404(pretrained_list(user=user), pk=pk)


def pretrained_in_use(*, model: PretrainedModel) -> bool:
    """A queued or running job starts from it (its weights are read when it starts)."""
    return TrainingJob.objects.filter(status__in=TrainingJob.ACTIVE, pretrained__model=model.pk).exists()


def pretrained_summary(*, model: PretrainedModel) -> dict[str, Any]:
    """The tensor index in brief: how many, how many values, and the first and last names."""
    names = list(model.tensors)
    values = sum(_count(shape) for shape in model.tensors.values())
    return {"tensors": len(names), "values": values, "first": names[:3], "last": names[-3:]}


def _count(shape: list[int]) -> int:
    total = 1
    for size in shape:
        total *= size
    return total


def data_relative(path: Any) -> str:
    return str(path.relative_to(settings.DATA_DIR))
