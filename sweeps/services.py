"""Writes for sweeps: create one (every value checked as a job's would be), advance it, abort it.

A sweep is driven by events, never by a long-running task: `sweep_advance` runs when the sweep is
created and whenever one of its jobs ends (jobs.hooks). Each run tells the Optuna study how the
ended trials did, asks it for new trials while fewer than `max_concurrent` run and the budget is not
spent (each a normal TrainingJob), and marks the sweep done when every trial has ended. It is
idempotent; a message lost with a killed worker is caught up by the reaper (`sweeps_unstall`).
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import asdict
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
from sweeps.spec import SweepSpec, spec_check
from workbench.queue import enqueue

log = logging.getLogger(__name__)


# --- create -----------------------------------------------------------------------------------

def sweep_create(*, owner: AbstractBaseUser, dataset: Dataset, spec: SweepSpec) -> Sweep:
    """Check everything a trial could trip on, make the Optuna study, then let the sweep advance."""
    plan = spec_check(owner=owner, dataset=dataset, spec=spec)
    sweep = Sweep(owner=owner, name=spec.name or f"Sweep of {spec.network} on {dataset.name}", dataset=dataset,
                  network=spec.network, max_concurrent=spec.max_concurrent, **asdict(plan),
                  study_name=f"workbench-sweep-{uuid.uuid4().hex}")
    # Optuna writes through its own connection: on SQLite never inside a transaction of Django's.
    studies.study_create(sweep)
    with transaction.atomic():
        sweep.save()
        _enqueue_advance(sweep.pk)
    return sweep


# --- advance ----------------------------------------------------------------------------------

def _enqueue_advance(sweep_id: int) -> None:
    transaction.on_commit(lambda: enqueue("sweeps.advance", sweep_id))


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
        studies.study_tell(study, trial.number, state=TrialState.PRUNED)
    elif job.status == TrainingJob.Status.DONE and value is not None:
        studies.study_tell(study, trial.number, float(value))
    else:
        studies.study_tell(study, trial.number, state=TrialState.FAIL)
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
            # The settings neither the base nor the trial gives take the network's own defaults.
            job = job_services.job_create(owner=sweep.owner, dataset=sweep.dataset, network=network,
                                          options=JobSettings(**fields), given=set(fields))
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
    (its message was lost with a killed worker). The workers' reaper calls this; pages only read."""
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
