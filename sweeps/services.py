"""Writes for sweeps: create one (every value checked as a job's would be), advance it, abort it.

A sweep is driven by events, never by a long-running task: `sweep_advance` runs when the sweep is
created and whenever one of its jobs ends (jobs.hooks). Each run tells the Optuna study how the
ended trials did, asks it for new trials while fewer than `max_concurrent` run and the budget is not
spent (each a normal TrainingJob), and marks the sweep done when every trial has ended. It is
idempotent; a message lost with a killed worker is caught up by the reaper (`sweeps_unstall`).
"""
from __future__ import annotations

import logging
import math
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from datasets.models import Dataset
from jobs import services as job_services
from jobs.models import TrainingJob
from jobs.services import JobInputError, JobSettings, JobStateError
from sweeps import study as studies
from sweeps.models import Sweep, Trial
from sweeps.pruning import STOP_EARLY

log = logging.getLogger(__name__)

# Settings a sweep may vary: every job setting but the labels (name, group, notes) and the list of
# milestones, plus the network.
SWEEPABLE = tuple(f for f in JobSettings.__dataclass_fields__ if f not in ("name", "group", "notes", "lr_milestones")
                  ) + ("network",)
METRICS = {"val_accuracy": "max", "val_loss": "min"}


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


# --- create -----------------------------------------------------------------------------------

def sweep_create(*, owner: AbstractBaseUser, dataset: Dataset, spec: SweepSpec) -> Sweep:
    """Check everything a trial could trip on, make the Optuna study, then let the sweep advance."""
    if dataset.status != Dataset.Status.READY:
        raise JobInputError(f"The dataset '{dataset.name}' is not ready (status: {dataset.status}).", "dataset")
    job_services.job_network_check(owner=owner, network=spec.network, dataset=dataset)
    base = _check_base(spec.base)
    grid, search, total = _check_plan(owner, dataset, spec, base)
    if not 1 <= spec.max_concurrent <= 100:
        raise JobInputError("Run between 1 and 100 trials at once.", "max_concurrent")
    metric, mode, early = _check_early_stopping(spec.early_stopping)
    sweep = Sweep(owner=owner, name=spec.name or f"Sweep of {spec.network} on {dataset.name}", dataset=dataset,
                  network=spec.network, base=base, grid=grid, search=search, max_concurrent=spec.max_concurrent,
                  metric=metric, mode=mode, early_stopping=early, trials_total=total,
                  study_name=f"workbench-sweep-{uuid.uuid4().hex}")
    # Optuna writes through its own connection: on SQLite never inside a transaction of Django's.
    studies.study_create(sweep)
    with transaction.atomic():
        sweep.save()
        _enqueue_advance(sweep.pk)
    return sweep


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
        if not isinstance(rule["choices"], list) or not rule["choices"]:
            raise JobInputError(f"Give '{name}' at least one choice.", where)
        return {"choices": list(dict.fromkeys(check(name, value, where) for value in rule["choices"]))}
    if not isinstance(rule, dict) or "low" not in rule or "high" not in rule:
        raise JobInputError(f"Give '{name}' a range {{low, high, log}} or {{choices: [...]}}.", where)
    if _kind(name) not in (int, float):
        raise JobInputError(f"'{name}' is not a number: give it choices, not a range.", where)
    low, high, log_ = check(name, rule["low"], where), check(name, rule["high"], where), bool(rule.get("log"))
    if low > high:
        raise JobInputError(f"The range of '{name}' runs backwards: low {low:g} is above high {high:g}.", where)
    if log_ and low <= 0:
        raise JobInputError(f"A log range needs a low above 0; '{name}' has {low:g}.", where)
    return {"low": low, "high": high, "log": log_}


def _check_sweepable(name: str, where: str) -> None:
    if name not in SWEEPABLE:
        raise JobInputError(f"'{name}' is not a job field a sweep can vary; use one of: {', '.join(SWEEPABLE)}.",
                            where)


def _check_early_stopping(early: Any) -> tuple[str, str, dict[str, Any] | None]:
    """The metric the study optimises, its direction, and the pruner's settings (None: no pruning)."""
    if early is None:
        return "val_accuracy", "max", None
    if not isinstance(early, dict) or early.get("method", "asha") != "asha":
        raise JobInputError("Early stopping is {method: asha, metric, mode, grace_epochs, reduction_factor} "
                            "or null.", "early_stopping.method")
    metric = early.get("metric", "val_accuracy")
    if metric not in METRICS:
        raise JobInputError("The metric is val_accuracy or val_loss.", "early_stopping.metric")
    mode = early.get("mode", METRICS[metric])
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
    return {"int": int, "float": float, "str": str}.get(str(JobSettings.__dataclass_fields__[name].type), object)


def _coerce(name: str, value: Any, where: str) -> Any:
    kind = _kind(name)
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


# --- advance ----------------------------------------------------------------------------------

def _enqueue_advance(sweep_id: int) -> None:
    from sweeps.tasks import advance_sweep

    transaction.on_commit(lambda: advance_sweep.delay(sweep_id))


def sweep_job_ended(job_id: int) -> None:
    """jobs.hooks: a job ended; if it is a sweep's trial, that sweep moves on."""
    sweep_id = Trial.objects.filter(job_id=job_id).values_list("sweep_id", flat=True).first()
    if sweep_id is not None:
        _enqueue_advance(sweep_id)


def _claim_seconds() -> int:
    # Longer than an advance takes; short enough that a worker killed while holding it costs little.
    return settings.HEARTBEAT_TIMEOUT * 2


def sweep_advance(*, sweep_id: int) -> None:
    """Tell, ask, finish: see the module's docstring. One process advances a sweep at a time.

    The hold is a claim on the sweep's row (a conditional UPDATE), not a transaction: Optuna writes
    through its own connection meanwhile, which on SQLite a Django transaction would lock out. Every
    call counts itself in `advance_wanted` first; the holder lets go only if no call came while it
    worked, so no event is lost between a holder's last look and its release.
    """
    Sweep.objects.filter(pk=sweep_id).update(advance_wanted=F("advance_wanted") + 1)
    now = timezone.now()
    free = Q(advancing_until__isnull=True) | Q(advancing_until__lt=now)
    if not Sweep.objects.filter(free, pk=sweep_id).update(advancing_until=now + timedelta(seconds=_claim_seconds())):
        return
    while True:
        seen = Sweep.objects.values_list("advance_wanted", flat=True).get(pk=sweep_id)
        try:
            _advance_once(Sweep.objects.get(pk=sweep_id))
        except Exception:
            Sweep.objects.filter(pk=sweep_id).update(advancing_until=None)
            raise
        now = timezone.now()
        if Sweep.objects.filter(pk=sweep_id, advance_wanted=seen).update(advancing_until=None, advanced_at=now):
            return
        Sweep.objects.filter(pk=sweep_id).update(advancing_until=now + timedelta(seconds=_claim_seconds()))


def _advance_once(sweep: Sweep) -> None:
    trials = list(sweep.trials.select_related("job"))
    study = studies.study_load(sweep, asked=len(trials))
    _forget_orphans(study, {t.number for t in trials})
    for trial in trials:
        if not trial.told and not trial.job.is_active:
            _tell(study, trial)
    if sweep.is_active:
        trials += _ask_while_room(sweep, study, trials)
    _abort_leftovers(sweep)
    ended = all(not t.job.is_active for t in trials)
    if sweep.is_active and ended and (len(trials) >= sweep.trials_total or sweep.error):
        Sweep.objects.filter(pk=sweep.pk, status__in=Sweep.ACTIVE).update(
            status=Sweep.Status.ERROR if sweep.error else Sweep.Status.DONE, finished_at=timezone.now())


def _forget_orphans(study: Any, known: set[int]) -> None:
    """A trial asked by a process that died before its job was made: failed, so it is asked anew."""
    from optuna.trial import TrialState

    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if frozen.number not in known:
            study.tell(frozen.number, state=TrialState.FAIL, skip_if_finished=True)


def _tell(study: Any, trial: Trial) -> None:
    from optuna.trial import TrialState

    job, sweep = trial.job, trial.sweep
    value = job.best.get(sweep.metric)
    if job.status == TrainingJob.Status.STOPPED and job.stop_reason == STOP_EARLY:
        study.tell(trial.number, state=TrialState.PRUNED, skip_if_finished=True)
    elif job.status == TrainingJob.Status.DONE and value is not None:
        study.tell(trial.number, float(value), skip_if_finished=True)
    else:
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
    Trial.objects.filter(pk=trial.pk).update(told=True)


def _ask_while_room(sweep: Sweep, study: Any, trials: list[Trial]) -> list[Trial]:
    wanted = studies.distributions(sweep)
    active = sum(t.job.is_active for t in trials)
    asked, new = len(trials), []
    while active < sweep.max_concurrent and asked < sweep.trials_total and not sweep.error:
        if not Sweep.objects.filter(pk=sweep.pk, status__in=Sweep.ACTIVE).exists():
            break  # aborted meanwhile
        trial = _trial_start(sweep, study, study.ask(wanted))
        if trial is None:
            break
        new.append(trial)
        active, asked = active + 1, asked + 1
    if new:
        Sweep.objects.filter(pk=sweep.pk, status=Sweep.Status.QUEUED).update(status=Sweep.Status.RUNNING)
    return new


def _trial_start(sweep: Sweep, study: Any, asked: Any) -> Trial | None:
    """The asked trial as a normal training job: the base settings with the trial's params. None
    when it cannot start (its dataset is no longer ready, say): the sweep ends in error once the
    trials already running have ended."""
    from optuna.trial import TrialState

    params = dict(asked.params)
    network = params.get("network", sweep.network)
    fields = {**sweep.base, **{k: v for k, v in params.items() if k != "network"},
              "name": f"{sweep.name} #{asked.number + 1}"}
    try:
        with transaction.atomic():
            job = job_services.job_create(owner=sweep.owner, dataset=sweep.dataset, network=network,
                                          options=JobSettings(**fields))
            return Trial.objects.create(sweep=sweep, job=job, number=asked.number, params=params)
    except JobInputError as exc:
        study.tell(asked.number, state=TrialState.FAIL, skip_if_finished=True)
        sweep.error = f"Trial #{asked.number + 1} could not start: {exc}"
        Sweep.objects.filter(pk=sweep.pk).update(error=sweep.error)
        return None


def _abort_leftovers(sweep: Sweep) -> None:
    """An aborted sweep's jobs that an advance started as the abort came in."""
    if Sweep.objects.filter(pk=sweep.pk, status=Sweep.Status.ABORTED).exists():
        _abort_jobs(sweep)


def _abort_jobs(sweep: Sweep) -> None:
    for job in TrainingJob.objects.filter(trial__sweep=sweep, status__in=TrainingJob.ACTIVE):
        try:
            job_services.job_abort(job=job)
        except JobStateError:
            pass  # it ended meanwhile


def sweeps_unstall(*, sweep_ids: list[int] | None = None, inline: bool = True) -> int:
    """Advance the active sweeps that nothing will advance: no trial job active, no advance for a while
    (its message was lost with a killed worker). The reaper calls this; so does a sweep's page."""
    now = timezone.now()
    quiet = now - timedelta(seconds=settings.HEARTBEAT_TIMEOUT)
    stalled = (Sweep.objects.filter(status__in=Sweep.ACTIVE)
               .filter(Q(advancing_until__isnull=True) | Q(advancing_until__lt=now))
               .filter(Q(advanced_at__lt=quiet) | Q(advanced_at__isnull=True, created_at__lt=quiet))
               .exclude(trials__job__status__in=TrainingJob.ACTIVE))
    if sweep_ids is not None:
        stalled = stalled.filter(pk__in=sweep_ids)
    ids = list(stalled.values_list("pk", flat=True))
    for sweep_id in ids:
        log.warning("sweep %s had no advance for %s s and no trial running: advancing it", sweep_id,
                    settings.HEARTBEAT_TIMEOUT)
        if inline:
            sweep_advance(sweep_id=sweep_id)
        else:
            _enqueue_advance(sweep_id)
    return len(ids)


# --- abort, train the best fully --------------------------------------------------------------

def sweep_abort(*, sweep: Sweep) -> Sweep:
    """No new trials; its queued and running trial jobs are aborted."""
    if not Sweep.objects.filter(pk=sweep.pk, status__in=Sweep.ACTIVE).update(status=Sweep.Status.ABORTED,
                                                                           finished_at=timezone.now()):
        raise JobStateError(f"Only a queued or running sweep can be aborted; this one is {sweep.status}.")
    _abort_jobs(sweep)
    sweep.refresh_from_db()
    return sweep


def sweep_train_best(*, sweep: Sweep, owner: AbstractBaseUser, epochs: int) -> TrainingJob:
    """A normal job (not in the sweep) with the best trial's settings, trained for `epochs`."""
    from sweeps.selectors import sweep_best_trial

    best = sweep_best_trial(sweep=sweep)
    if best is None:
        raise JobStateError("No trial of this sweep has a result yet.")
    options = asdict(job_services.job_settings(job=best.job))
    options.update(epochs=epochs, name=f"{best.job.name} (full, {epochs} epochs)")
    return job_services.job_create(owner=owner, dataset=best.job.dataset, network=best.job.network,
                                   options=JobSettings(**options))
