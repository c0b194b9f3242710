"""The Optuna side of a sweep: its storage, and the study with the sampler and pruner it was made with.

Storage: the workbench's own database, through Optuna's RDBStorage. It is the one store every
worker on every host and the web already reach (no extra service to run or secure), it is
transactional (two workers asking at once get distinct trials), and the study lives and is backed
up beside the sweep and jobs it belongs to. The SQLAlchemy URL is derived at run time from
Django's connection settings, so tests (their own database) and worker subprocesses use the very
database Django does. On SQLite, Optuna's connection waits for the file's lock (busy timeout) and
takes it when a transaction begins (BEGIN IMMEDIATE), as Django's does: no deadlock between the two.

Optuna keeps no sampler or pruner in its storage: each load builds them again from the sweep.
A seeded random or TPE sampler built anew would draw the same numbers on every load, so its seed
moves on with the trials already asked (still reproducible: the same sweep draws the same trials in
order). The grid's seed stays: it fixes the grid's order, and trial n takes point n of it.
"""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from django.db import connection

if TYPE_CHECKING:
    import optuna

    from sweeps.models import Sweep

_SQLITE_BUSY_SECONDS = 30


def storage_url(db: dict[str, Any] | None = None) -> str:
    """Django's database (the default connection's settings unless given) as a SQLAlchemy URL."""
    from sqlalchemy.engine import URL

    db = db if db is not None else connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    if db["ENGINE"].endswith("postgresql"):
        return URL.create("postgresql+psycopg", username=db["USER"] or None, password=db["PASSWORD"] or None,
                          host=db["HOST"] or None, port=int(db["PORT"]) if db["PORT"] else None,
                          database=db["NAME"]).render_as_string(hide_password=False)
    raise ValueError(f"Sweeps support SQLite and PostgreSQL, not {db['ENGINE']}.")


@lru_cache(maxsize=4)
def _storage(url: str) -> optuna.storages.RDBStorage:
    import optuna
    from sqlalchemy import event
    from sqlalchemy.pool import NullPool

    if not url.startswith("sqlite"):
        # No pool: a sweep talks to its study a few times per trial, and a pool would hold idle
        # connections in the web process and every worker, beside Django's own.
        return optuna.storages.RDBStorage(url, engine_kwargs={"poolclass": NullPool})
    # The driver's own transaction handling off, so that ours (BEGIN IMMEDIATE) is the one used.
    storage = optuna.storages.RDBStorage(url, engine_kwargs={
        "connect_args": {"timeout": _SQLITE_BUSY_SECONDS, "isolation_level": None}})
    event.listen(storage.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    return storage


def storage() -> optuna.storages.RDBStorage:
    return _storage(storage_url())


def study_create(sweep: Sweep) -> None:
    import optuna

    direction = "maximize" if sweep.mode == "max" else "minimize"
    optuna.create_study(study_name=sweep.study_name, storage=storage(), direction=direction)


def study_load(sweep: Sweep, asked: int = 0) -> optuna.Study:
    import optuna

    return optuna.load_study(study_name=sweep.study_name, storage=storage(), sampler=_sampler(sweep, asked),
                             pruner=_pruner(sweep))


def study_trial(study: optuna.Study, sweep: Sweep, number: int) -> optuna.trial.Trial:
    """The running trial `number` of the sweep's study, to report to and ask whether to prune.

    Through the storage's public lookups (study name → id, trial number → id), not the study's
    private `_storage` and `_study_id`: the sweep's row keeps the trial number, the storage the rest.
    """
    import optuna

    store = storage()
    trial_id = store.get_trial_id_from_study_id_trial_number(store.get_study_id_from_name(sweep.study_name), number)
    return optuna.trial.Trial(study, trial_id)


def _sampler(sweep: Sweep, asked: int) -> optuna.samplers.BaseSampler:
    import optuna

    if sweep.grid is not None:
        # Not moved on: the seed shuffles the grid, and trial n takes the shuffled grid's point n.
        return optuna.samplers.GridSampler(sweep.grid, seed=0)
    search: dict[str, Any] = sweep.search or {}
    # Spread apart, so that seed s after n trials never draws what seed s + 1 after n - 1 did.
    seed = None if search.get("seed") is None else (int(search["seed"]) * 1_000_003 + asked) % 2**32
    if search.get("method") == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def _pruner(sweep: Sweep) -> optuna.pruners.BasePruner:
    import optuna

    early: dict[str, Any] | None = sweep.early_stopping
    if not early:
        return optuna.pruners.NopPruner()
    # ASHA: Optuna's SuccessiveHalvingPruner judges each trial at rungs as it reaches them.
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=int(early["grace_epochs"]),
                                                  reduction_factor=int(early["reduction_factor"]))


def distributions(sweep: Sweep) -> dict[str, optuna.distributions.BaseDistribution]:
    """What each trial asks for: the grid's values as choices, or the search space."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if sweep.grid is not None:
        return {name: CategoricalDistribution(values) for name, values in sweep.grid.items()}
    wanted: dict[str, optuna.distributions.BaseDistribution] = {}
    for name, rule in (sweep.search or {})["space"].items():
        if "choices" in rule:
            wanted[name] = CategoricalDistribution(rule["choices"])
        elif isinstance(rule["low"], int) and isinstance(rule["high"], int):
            wanted[name] = IntDistribution(rule["low"], rule["high"], log=bool(rule.get("log")))
        else:
            wanted[name] = FloatDistribution(float(rule["low"]), float(rule["high"]), log=bool(rule.get("log")))
    return wanted


def study_tell(study: Any, number: int, value: float | None = None, state: Any = None) -> None:
    """Optuna's tell, once (a trial told already is skipped).

    GridSampler asks the study to stop once its grid is spent, which only an `optimize` loop may
    do: outside one, Optuna raises after it has stored the trial (in a `finally`). The sweep ends
    by its own count of ended trials, so that request is nothing to act on.
    """
    try:
        if value is not None:
            study.tell(number, value, skip_if_finished=True)
        else:
            study.tell(number, state=state, skip_if_finished=True)
    except RuntimeError as exc:
        if "Study.stop" not in str(exc):
            raise
