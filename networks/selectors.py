"""Reads for networks: the built-ins and the user's custom ones, and their summaries."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.http import Http404

from datasets.models import Dataset
from networks.builtin import BUILTIN_NETWORKS, builtin_spec
from networks.errors import NetworkInputError
from networks.models import Network
from networks.spec import HEAD_TASKS, NetworkSummary, SpecError, check_head, head_tasks, summarize
from training.vision_tasks import VISION_TASKS, vision_task

DEFAULT_SUMMARY_INPUT = ((1, 28, 28), 10)
# The tasks a custom spec network can serve, each by its head: one score per class (it flattens),
# or one score per class for each pixel (it stays image-shaped); networks.spec.head_tasks says which.
CUSTOM_NETWORK_TASKS = ("classification", "segmentation")


@dataclass(frozen=True)
class NetworkEntry:
    id: str
    name: str
    builtin: bool
    title: str
    network: Network | None = None
    tasks: tuple[str, ...] = CUSTOM_NETWORK_TASKS  # the vision tasks it fits (training.vision_tasks)


def builtin_tasks(name: str) -> tuple[str, ...]:
    """The vision tasks whose built-in networks include `name`."""
    return tuple(task.name for task in VISION_TASKS.values() if name in task.networks)


def network_list(*, user: AbstractBaseUser, task: str = "") -> list[NetworkEntry]:
    """The built-ins and the user's custom networks; with `task`, only those that fit it."""
    builtins = [NetworkEntry(name, name, True, title, tasks=builtin_tasks(name))
                for name, title in BUILTIN_NETWORKS.items()]
    custom = Network.objects.all() if user.is_staff else Network.objects.filter(owner=user)
    entries = builtins + [NetworkEntry(str(n.pk), n.name, False, n.description or n.name, n, head_tasks(n.spec))
                          for n in custom]
    return [entry for entry in entries if not task or task in entry.tasks]


def network_get(*, user: AbstractBaseUser, key: str) -> NetworkEntry:
    for entry in network_list(user=user):
        if key in (entry.id, entry.name):
            return entry
    raise Http404("No such network.")


def network_summary(*, entry: NetworkEntry, dataset: Dataset | None) -> tuple[NetworkSummary, tuple[int, int, int], int]:
    """The summary for a dataset's input (or 1x28x28 with 10 classes); SpecError if it does not fit."""
    (shape, classes), task = DEFAULT_SUMMARY_INPUT, None
    if dataset is not None and dataset.status == Dataset.Status.READY:
        shape = tuple(dataset.image_shape)  # type: ignore[assignment]
        classes = vision_task(dataset.task).outputs(dataset.classes)
        task = _head_task(dataset.task)
    spec = builtin_spec(entry.name, shape, classes) if entry.builtin else entry.network.spec  # type: ignore[union-attr]
    return summarize(spec, shape, classes, task), shape, classes


def network_resolve(*, user: AbstractBaseUser, network: str, dataset: Dataset) -> tuple[dict[str, Any], Network | None]:
    """The spec for a built-in name or one of the user's custom networks (by id or name)."""
    task = vision_task(dataset.task)
    shape, classes = tuple(dataset.image_shape), task.outputs(dataset.classes)
    fitting = ", ".join(task.networks)
    if network in BUILTIN_NETWORKS:
        if network not in task.networks:
            raise NetworkInputError(f"The network '{network}' does not fit a {task.name} dataset: use one of "
                                    f"{fitting}.", "network")
        return _fitting(builtin_spec(network, shape, classes), dataset), None  # type: ignore[arg-type]
    custom = _custom_network(user, network)
    if custom is None:
        raise NetworkInputError(f"Unknown network '{network}': use a built-in ({fitting}) or one of your networks.",
                                "network")
    if task.name not in CUSTOM_NETWORK_TASKS:
        raise NetworkInputError(f"Custom networks do not fit a {task.name} dataset yet: use one of {fitting}.",
                                "network")
    return _fitting(custom.spec, dataset), custom


def _fitting(spec: dict[str, Any], dataset: Dataset) -> dict[str, Any]:
    """The spec, if it ends in the dataset's task's head on the dataset's input (SpecError worded as a job's).

    Planned rather than read off head_tasks(): a spec that is wrong anyway gets its own layer's message."""
    task = _head_task(dataset.task)
    if task is not None:
        shape, classes = tuple(dataset.image_shape), vision_task(dataset.task).outputs(dataset.classes)
        try:
            check_head(spec, shape, classes, task)  # type: ignore[arg-type]
        except SpecError as exc:
            raise NetworkInputError(f"The network does not fit this dataset: {exc}", "network") from None
    return spec


def _head_task(task: str) -> str | None:
    # A task without a head rule of its own (a test's toy task) takes any head networks.spec knows.
    return task if task in HEAD_TASKS else None


def _custom_network(user: AbstractBaseUser, network: str) -> Network | None:
    mine = Network.objects.all() if user.is_staff else Network.objects.filter(owner=user)
    if network.isdigit():
        return mine.filter(pk=int(network)).first()
    return mine.filter(name=network).first()
