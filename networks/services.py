"""Writes for custom networks."""
from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser

from networks.builtin import BUILTIN_NETWORKS
from networks.errors import NetworkInputError
from networks.models import Network
from networks.spec import SpecError, validate_spec


def network_create(*, owner: AbstractBaseUser, name: str, spec: object, description: str = "") -> Network:
    try:
        normalized = validate_spec(spec)
    except SpecError as exc:
        raise NetworkInputError(str(exc), "spec") from None
    if name in BUILTIN_NETWORKS:
        raise NetworkInputError(f"'{name}' is the name of a built-in network; choose another.", "name")
    if Network.objects.filter(owner=owner, name=name).exists():
        raise NetworkInputError(f"You already have a network named '{name}'.", "name")
    return Network.objects.create(owner=owner, name=name, spec=normalized, description=description)


def network_delete(*, network: Network) -> None:
    network.delete()
