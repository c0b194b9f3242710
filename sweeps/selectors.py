"""Reads for sweeps: lists, one sweep with its leaderboard, and what its page plots."""
from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Q, QuerySet
from django.shortcuts import get_object_or_404

from jobs.models import TrainingJob
from sweeps.models import Sweep, Trial

ENDED = [s for s in TrainingJob.Status.values if s not in TrainingJob.ACTIVE]


def sweep_list(*, user: AbstractBaseUser) -> QuerySet[Sweep]:
    """The user's sweeps (staff: everyone's), each with its count of ended trials."""
    sweeps = Sweep.objects.select_related("owner", "dataset").annotate(
        trials_ended=Count("trials", filter=Q(trials__job__status__in=ENDED))).order_by("-created_at", "-id")
    return sweeps if user.is_staff else sweeps.filter(owner=user)


def sweep_get(*, user: AbstractBaseUser, pk: int) -> Sweep:
    """The sweep if the user may see it; anyone else's is a 404, never a 403."""
    return get_object_or_404(sweep_list(user=user), pk=pk)


def sweep_progress(*, sweep: Sweep) -> float:
    return min(getattr(sweep, "trials_ended", 0) / max(sweep.trials_total, 1), 1.0)


def sweep_trials(*, sweep: Sweep) -> list[Trial]:
    """The leaderboard: best first by the sweep's metric; trials with no value yet last, by number."""
    trials = list(sweep.trials.select_related("job"))
    maximize = sweep.mode == "max"

    def rank(trial: Trial) -> tuple[int, float, int]:
        value = trial.job.best.get(sweep.metric)
        if value is None:
            return (1, 0.0, trial.number)
        return (0, -value if maximize else value, trial.number)

    return sorted(trials, key=rank)


def sweep_best_trial(*, sweep: Sweep, trials: list[Trial] | None = None) -> Trial | None:
    """The best trial that trained all its epochs; if none did yet, the best with any value."""
    ranked = [t for t in (trials if trials is not None else sweep_trials(sweep=sweep))
              if t.job.best.get(sweep.metric) is not None]
    done = [t for t in ranked if t.job.status == TrainingJob.Status.DONE]
    return (done or ranked or [None])[0]


def trial_row(trial: Trial, metric: str) -> dict[str, Any]:
    job = trial.job
    return {"id": job.pk, "name": job.name, "status": job.status, "stop_reason": job.stop_reason, "epoch": job.epoch,
            "params": trial.params, "best": job.best, "number": trial.number + 1, "value": job.best.get(metric)}


def sweep_dict(*, sweep: Sweep) -> dict[str, Any]:
    """The sweep's JSON (API and page poll): status, progress, leaderboard, best job, what it varies."""
    trials = sweep_trials(sweep=sweep)
    best = sweep_best_trial(sweep=sweep, trials=trials)
    ended = sum(t.job.status in ENDED for t in trials)
    return {
        "id": sweep.pk, "name": sweep.name, "status": sweep.status, "error": sweep.error,
        "progress": min(ended / max(sweep.trials_total, 1), 1.0), "trials_total": sweep.trials_total,
        "trials_ended": ended, "metric": sweep.metric, "mode": sweep.mode, "dataset": sweep.dataset_id,
        "network": sweep.network, "base": sweep.base, "grid": sweep.grid, "search": sweep.search,
        "max_concurrent": sweep.max_concurrent, "early_stopping": sweep.early_stopping,
        "params": sweep_param_names(sweep=sweep), "created_at": sweep.created_at, "finished_at": sweep.finished_at,
        "jobs": [trial_row(t, sweep.metric) for t in trials],
        "best_job": None if best is None else {"id": best.job.pk, "name": best.job.name, "params": best.params,
                                               "best": best.job.best},
    }


def sweep_param_names(*, sweep: Sweep) -> list[str]:
    # Sorted: PostgreSQL's jsonb keeps an object's keys in an order of its own, not the one given.
    return sorted((sweep.grid or (sweep.search or {}).get("space") or {}).keys())
