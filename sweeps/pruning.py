"""Early stopping: each validation of a trial's job is reported to its Optuna trial, and the pruner
(ASHA: SuccessiveHalvingPruner) says whether the job goes on. Runs on the worker, in the reporter's
writer thread (jobs.hooks.validated), so the training loop never waits for it."""
from __future__ import annotations

import math

from sweeps import study as studies
from sweeps.models import Trial

STOP_EARLY = "early_stopping"


def trial_validated(job_id: int, epoch: float, metrics: dict[str, float]) -> str:
    """jobs.hooks: "early_stopping" when the pruner stops this trial now, else ""."""
    trial = Trial.objects.select_related("sweep").filter(job_id=job_id).first()
    if trial is None or not trial.sweep.early_stopping:
        return ""
    value = metrics.get(trial.sweep.metric)
    if value is None or not math.isfinite(value):
        return ""
    running = studies.study_trial(studies.study_load(trial.sweep), trial.sweep, trial.number)
    # The step is the epoch: grace_epochs and the rungs count epochs.
    running.report(value, step=max(1, round(epoch)))
    return STOP_EARLY if running.should_prune() else ""
