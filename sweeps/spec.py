"""What a sweep is asked to do, checked before anything is queued: every field it varies must be one
a job has, and every value it may try must pass the checks a job's settings pass (jobs.services)."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser

from datasets.models import Dataset
from jobs import services as job_services
from jobs.options import setting_type
from jobs.services import JobInputError, JobSettings
from training.vision_tasks import vision_task

# Settings a sweep may vary: every job setting but the labels (name, group, notes) and the list of
# milestones, plus the network.
SWEEPABLE = tuple(f for f in JobSettings.__dataclass_fields__ if f not in ("name", "group", "notes", "lr_milestones")
                  ) + ("network",)


def sweep_metrics(task: str) -> dict[str, str]:
    """What a sweep on a dataset of `task` may optimise, and each one's direction: the task's live
    metrics (val_<name>; the first is the default) and val_loss."""
    return {**{f"val_{m.name}": m.mode for m in vision_task(task).metrics}, "val_loss": "min"}


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep is asked to do, as it comes from the API or a form (checked by sweep_create)."""

    name: str
    network: str
    base: dict[str, Any]
    grid: dict[str, list[Any]] | None = None
    search: dict[str, Any] | None = None
    max_concurrent: int = 2
    early_stopping: dict[str, Any] | None = None


@dataclass(frozen=True)
class CheckedSpec:
    """A spec's plan as stored on the sweep: normalised, every value checked."""

    base: dict[str, Any]
    grid: dict[str, list[Any]] | None
    search: dict[str, Any] | None
    trials_total: int
    metric: str
    mode: str
    early_stopping: dict[str, Any] | None


def spec_check(*, owner: AbstractBaseUser, dataset: Dataset, spec: SweepSpec) -> CheckedSpec:
    """JobInputError naming the field (e.g. grid.learning_rate) for the first thing that cannot run."""
    if dataset.status != Dataset.Status.READY:
        raise JobInputError(f"The dataset '{dataset.name}' is not ready (status: {dataset.status}).", "dataset")
    job_services.job_network_check(owner=owner, network=spec.network, dataset=dataset)
    base = _check_base(spec.base)
    _check_augmentation(base, dataset)
    grid, search, total = _check_plan(owner, dataset, spec, base)
    if not 1 <= spec.max_concurrent <= 100:
        raise JobInputError("Run between 1 and 100 trials at once.", "max_concurrent")
    metric, mode, early = _check_early_stopping(spec.early_stopping, sweep_metrics(dataset.task))
    return CheckedSpec(base, grid, search, total, metric, mode, early)


def _check_base(base: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(base, dict):
        raise JobInputError("Give the base settings as an object of job fields.", "base")
    known = set(JobSettings.__dataclass_fields__) - {"name"}
    # The sweep's own dataset, network and trial names win over a job body pasted as the base.
    base = {k: v for k, v in base.items() if k not in ("name", "dataset", "network")}
    for name in base:
        if name not in known:
            raise JobInputError(f"'{name}' is not a job setting; use: {', '.join(sorted(known))}.", f"base.{name}")
    checked = {name: _coerce(name, value, f"base.{name}") for name, value in base.items()}
    _check_settings(JobSettings(**checked), "base")
    return checked


def _check_augmentation(base: dict[str, Any], dataset: Dataset) -> None:
    """Every trial trains on this dataset: its augmentation is checked once, here, by job_create's own rule."""
    options = JobSettings(augmentation=base.get("augmentation") or {}, backend=base.get("backend", ""))
    try:
        job_services.job_augmentation_check(options, dataset)
    except JobInputError as exc:  # its message names the key already (augmentation.hsv: ...)
        raise JobInputError(str(exc), "base.augmentation") from None


def _check_plan(owner: AbstractBaseUser, dataset: Dataset, spec: SweepSpec,
                base: dict[str, Any]) -> tuple[dict[str, list[Any]] | None, dict[str, Any] | None, int]:
    if (spec.grid is None) == (spec.search is None):
        raise JobInputError("Give either a grid or a search, not both and not neither.", "grid")
    check = _ValueCheck(owner, dataset, JobSettings(**base))
    if spec.grid is not None:
        grid = _check_grid(spec.grid, check)
        total = math.prod(len(values) for values in grid.values())
        _check_budget(total, "grid")
        return grid, None, total
    search = _check_search(spec.search, check)
    return None, search, search["trials"]


def _check_budget(total: int, field: str) -> None:
    limit = settings.WORKBENCH_SWEEP_MAX_TRIALS
    if total > limit:
        raise JobInputError(f"This sweep has {total} trials; at most {limit} are allowed "
                            f"(WORKBENCH_SWEEP_MAX_TRIALS).", field)


def _check_grid(grid: Any, check: _ValueCheck) -> dict[str, list[Any]]:
    if not isinstance(grid, dict) or not grid:
        raise JobInputError("The grid is empty: give at least one field with its values.", "grid")
    checked: dict[str, list[Any]] = {}
    for name, values in grid.items():
        where = f"grid.{name}"
        _check_sweepable(name, where)
        if not isinstance(values, list) or not values:
            raise JobInputError(f"Give '{name}' a list of at least one value.", where)
        checked[name] = list(dict.fromkeys(check(name, value, where) for value in values))
    return checked


def _check_search(search: Any, check: _ValueCheck) -> dict[str, Any]:
    if not isinstance(search, dict):
        raise JobInputError("Give the search as {method, trials, seed, space}.", "search")
    _check_keys(search, ("method", "trials", "seed", "space"), "search")
    method = search.get("method", "random")
    if method not in ("random", "tpe"):
        raise JobInputError("The search method is random or tpe.", "search.method")
    trials = search.get("trials")
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise JobInputError("Give the number of trials, 1 or more.", "search.trials")
    _check_budget(trials, "search.trials")
    seed = search.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise JobInputError("The seed is a whole number, 0 or more.", "search.seed")
    space = search.get("space")
    if not isinstance(space, dict) or not space:
        raise JobInputError("The search space is empty: give at least one field.", "search.space")
    checked = {name: _check_rule(name, rule, check) for name, rule in space.items()}
    return {"method": method, "trials": trials, "seed": seed, "space": checked}


def _check_rule(name: str, rule: Any, check: _ValueCheck) -> dict[str, Any]:
    where = f"search.space.{name}"
    _check_sweepable(name, where)
    if isinstance(rule, dict) and "choices" in rule:
        _check_keys(rule, ("choices",), where)
        if not isinstance(rule["choices"], list) or not rule["choices"]:
            raise JobInputError(f"Give '{name}' at least one choice.", where)
        return {"choices": list(dict.fromkeys(check(name, value, where) for value in rule["choices"]))}
    if not isinstance(rule, dict) or "low" not in rule or "high" not in rule:
        raise JobInputError(f"Give '{name}' a range {{low, high, log}} or {{choices: [...]}}.", where)
    _check_keys(rule, ("low", "high", "log"), where)
    if _kind(name) not in (int, float):
        raise JobInputError(f"'{name}' is not a number: give it choices, not a range.", where)
    low, high, log_ = check(name, rule["low"], where), check(name, rule["high"], where), bool(rule.get("log"))
    if low > high:
        raise JobInputError(f"The range of '{name}' runs backwards: low {low:g} is above high {high:g}.", where)
    if log_ and low <= 0:
        raise JobInputError(f"A log range needs a low above 0; '{name}' has {low:g}.", where)
    return {"low": low, "high": high, "log": log_}


def _check_keys(given: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    """A key the object does not have is refused, naming it: a typo (`"trails": 50`) never runs the default."""
    unknown = sorted(set(given) - set(known), key=str)
    if unknown:
        raise JobInputError(f"'{unknown[0]}' is not a key of {where.split('.')[-1]}; use: {', '.join(known)}.",
                            f"{where}.{unknown[0]}")


def _check_sweepable(name: str, where: str) -> None:
    if name not in SWEEPABLE:
        raise JobInputError(f"'{name}' is not a job field a sweep can vary; use one of: {', '.join(SWEEPABLE)}.",
                            where)


def _check_early_stopping(early: Any, metrics: dict[str, str]) -> tuple[str, str, dict[str, Any] | None]:
    """The metric the study optimises (one of `metrics`, the first by default), its direction, and the
    pruner's settings (None: no pruning)."""
    default = next(iter(metrics))
    if early is None:
        return default, metrics[default], None
    if not isinstance(early, dict) or early.get("method", "asha") != "asha":
        raise JobInputError("Early stopping is {method: asha, metric, mode, grace_epochs, reduction_factor} "
                            "or null.", "early_stopping.method")
    _check_keys(early, ("method", "metric", "mode", "grace_epochs", "reduction_factor"), "early_stopping")
    metric = early.get("metric", default)
    if metric not in metrics:
        raise JobInputError(f"The metric is {' or '.join(metrics)} for this dataset.", "early_stopping.metric")
    mode = early.get("mode", metrics[metric])
    if mode not in ("max", "min"):
        raise JobInputError("The mode is max or min.", "early_stopping.mode")
    numbers = {"grace_epochs": (early.get("grace_epochs", 1), 1), "reduction_factor": (early.get("reduction_factor", 3), 2)}
    for name, (value, lowest) in numbers.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
            raise JobInputError(f"{name} is a whole number, {lowest} or more.", f"early_stopping.{name}")
    return metric, mode, {"method": "asha", "metric": metric, "mode": mode,
                          "grace_epochs": numbers["grace_epochs"][0], "reduction_factor": numbers["reduction_factor"][0]}


class _ValueCheck:
    """One value of one field, checked by the rules a job's settings are (jobs.services)."""

    def __init__(self, owner: AbstractBaseUser, dataset: Dataset, base: JobSettings) -> None:
        self.owner, self.dataset, self.base = owner, dataset, base

    def __call__(self, name: str, value: Any, where: str) -> Any:
        if name == "network":
            if not isinstance(value, str):
                raise JobInputError("A network is given by its name.", where)
            _with_field(lambda: job_services.job_network_check(owner=self.owner, network=value,
                                                               dataset=self.dataset), where)
            return value
        value = _coerce(name, value, where)
        _check_settings(replace(self.base, **{name: value}), where)
        return value


def _check_settings(options: JobSettings, where: str) -> None:
    _with_field(lambda: job_services.job_options_check(options), where)


def _with_field(check: Any, where: str) -> None:
    """Run a jobs check; its refusal names the sweep's field (e.g. grid.learning_rate)."""
    try:
        check()
    except JobInputError as exc:
        field = where if "." in where else f"{where}.{exc.field}"
        raise JobInputError(f"{field.split('.')[-1]}: {exc}", field) from None


def _kind(name: str) -> type:
    return {"int": int, "float": float, "str": str}.get(setting_type(name), object)


def _coerce(name: str, value: Any, where: str) -> Any:
    kind = _kind(name)
    declared = setting_type(name)
    if declared.startswith("dict"):
        # augmentation, pretrained: objects that job_create checks (naming the bad key) for each trial
        if not isinstance(value, dict):
            raise JobInputError(f"'{name}' takes an object.", where)
        return value
    if declared == "bool":  # compile
        if not isinstance(value, bool):
            raise JobInputError(f"'{name}' takes true or false, not {value!r}.", where)
        return value
    if declared == "list[str]":  # devices: job_create checks each
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise JobInputError(f"'{name}' takes a list of names.", where)
        return value
    if kind is object:  # the milestones: a list of epochs
        if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                  for v in value):
            raise JobInputError(f"'{name}' takes a list of numbers.", where)
        return [float(v) for v in value]
    if kind is str:
        if isinstance(value, str):
            return value.strip()
        raise JobInputError(f"'{name}' takes text, not {value!r}.", where)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise JobInputError(f"'{name}' takes a number, not {value!r}.", where)
    if kind is int:
        if value != int(value):
            raise JobInputError(f"'{name}' takes a whole number, not {value!r}.", where)
        return int(value)
    return float(value)
