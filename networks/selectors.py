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
from networks.spec import NetworkSummary, summarize

DEFAULT_SUMMARY_INPUT = ((1, 28, 28), 10)

@dataclass(frozen=True)
class NetworkEntry:
    id: str
    name: str
    builtin: bool
    title: str
    network: Network | None = None


def network_list(*, user: AbstractBaseUser) -> list[NetworkEntry]:
    builtins = [NetworkEntry(name, name, True, title) for name, title in BUILTIN_NETWORKS.items()]
    custom = Network.objects.all() if user.is_staff else Network.objects.filter(owner=user)
    return builtins + [NetworkEntry(str(n.pk), n.name, False, n.description or n.name, n) for n in custom]


def network_get(*, user: AbstractBaseUser, key: str) -> NetworkEntry:
    for entry in network_list(user=user):
        if key in (entry.id, entry.name):
            return entry
    raise Http404("No such network.")


def network_summary(*, entry: NetworkEntry, dataset: Dataset | None) -> tuple[NetworkSummary, tuple[int, int, int], int]:
    """The summary for a dataset's input (or 1x28x28 with 10 classes); SpecError if it does not fit."""
    shape, classes = DEFAULT_SUMMARY_INPUT
    if dataset is not None and dataset.status == Dataset.Status.READY:
        shape, classes = tuple(dataset.image_shape), len(dataset.classes)  # type: ignore[assignment]
    spec = builtin_spec(entry.name, shape, classes) if entry.builtin else entry.network.spec  # type: ignore[union-attr]
    return summarize(spec, shape, classes), shape, classes


def network_resolve(*, user: AbstractBaseUser, network: str, dataset: Dataset) -> tuple[dict[str, Any], Network | None]:
    """The spec for a built-in name or one of the user's custom networks (by id or name)."""
    shape, classes = tuple(dataset.image_shape), len(dataset.classes)
    if network in BUILTIN_NETWORKS:
        return builtin_spec(network, shape, classes), None  # type: ignore[arg-type]
    custom = _custom_network(user, network)
    if custom is None:
        names = ", ".join(BUILTIN_NETWORKS)
        raise NetworkInputError(f"Unknown network '{network}': use a built-in ({names}) or one of your networks.",
                                "network")
    return custom.spec, custom


def _custom_network(user: AbstractBaseUser, network: str) -> Network | None:
    mine = Network.objects.all() if user.is_staff else Network.objects.filter(owner=user)
    if network.isdigit():
        return mine.filter(pk=int(network)).first()
    return mine.filter(name=network).first()
