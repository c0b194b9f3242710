"""Training overhead of the JAX backend: a job run through JaxBackend against a bare jitted Flax loop.

    .venv/bin/python bench/train_overhead_jax.py [--networks lenet,mlp] [--epochs 20] [--repeat 5]
                                                 [--size 28] [--batch-size 64] [--threads 1] [--tiny] [--accuracy]

The method of bench/train_overhead.py: scikit-learn's digits ingested once (grayscale, --size
square); for each network, alternating in this one process:
  bare     a hand-written jitted loop: the same Flax NNX model (training.jax.build of the built-in
           spec), the same data on the device, batch size, SGD (momentum 0.9, lr 0.01), seed,
           shuffling and normalisation, scoring the validation split after each epoch; no snapshots
  backend  JaxBackend.train on a TrainingJob with the job defaults (validate and snapshot every
           epoch), reporting to a real DatabaseReporter on the SQLite database
Both count training samples: epochs * train size / seconds. Each run compiles its own steps (a
new closure each time), so the time jax spends tracing, lowering and compiling (read from jax's
own monitoring events) is reported apart and taken out of both: samples/s are of the running loop.
--accuracy: LeNet trained with the job defaults for --accuracy-epochs by this backend and by the
torch backend (the same TrainingPlan), and each one's final val accuracy.
--tiny: one run of one epoch each, no warm-up: a check that the benchmark still works, not a figure.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_TMP = tempfile.TemporaryDirectory(prefix="wb-bench-train-jax-")
os.environ["DJANGO_SETTINGS_MODULE"] = "workbench.settings"
os.environ["WORKBENCH_DATA_DIR"] = _TMP.name
os.environ.pop("DATABASE_URL", None)
os.environ.pop("CELERY_BROKER_URL", None)
os.environ.setdefault("LOG_LEVEL", "WARNING")
# --threads, read before jax starts: XLA's CPU thread pool is sized when it starts. 1 (as
# train_overhead.py's torch threads): both sides on one core, the job's reporter and snapshot
# threads on the other, steadiest on a shared 2-core machine; 0 leaves XLA its default (every core).
_THREADS = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 1
if _THREADS:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                               f"intra_op_parallelism_threads={_THREADS}").strip()

import django  # noqa: E402

django.setup()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from _digits import ingest_digits  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from flax import nnx  # noqa: E402

from datasets.ingest.store import open_split  # noqa: E402
from datasets.models import Dataset  # noqa: E402
from jobs.models import TrainingJob  # noqa: E402
from jobs.reporting import DatabaseReporter  # noqa: E402
from jobs.services import training_plan  # noqa: E402
from networks.builtin import builtin_spec  # noqa: E402
from training.jax.backend import JaxBackend  # noqa: E402
from training.jax.build import build_model  # noqa: E402
from workbench.leases import heartbeat, lease_claim  # noqa: E402

SEED = 0
LR, MOMENTUM = 0.01, 0.9
COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")
_compiling = [0.0]


def _on_event(event: str, duration: float, **_: object) -> None:
    if event in COMPILE_EVENTS:
        _compiling[0] += duration


jax.monitoring.register_event_duration_secs_listener(_on_event)
# Each run makes its steps anew (as each job does); the persistent cache lets a repeat load what an
# earlier run compiled, on both sides alike, so a figure takes minutes, not compilations.
jax.config.update("jax_compilation_cache_dir", str(Path(_TMP.name) / "jax-cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def timed(run) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(seconds, of which compiling) for one call."""
    _compiling[0] = 0.0
    started = time.perf_counter()
    run()
    return time.perf_counter() - started, _compiling[0]


# --- the two contenders ---------------------------------------------------------------------

def run_bare(dataset: Dataset, network: str, epochs: int, batch_size: int) -> None:
    """A jitted Flax loop as someone would write it without the workbench, validating each epoch."""
    images, labels = open_split(dataset.folder, "train")
    images, labels = jnp.asarray(np.array(images)), jnp.asarray(labels.astype(np.int32))
    val_images, val_labels = open_split(dataset.folder, "val")
    val_images, val_labels = jnp.asarray(np.array(val_images)), jnp.asarray(val_labels.astype(np.int32))
    mean = jnp.asarray(np.load(dataset.folder / "mean.npy"))
    shape, classes = tuple(dataset.image_shape), len(dataset.classes)
    graphdef, params, stats, constants = nnx.split(build_model(builtin_spec(network, shape, classes), shape, classes,
                                                               seed=SEED), nnx.Param, nnx.BatchStat, ...)
    tx = optax.sgd(LR, MOMENTUM)
    opt_state = tx.init(params)
    key = jax.random.key(SEED)

    @jax.jit
    def step(params, stats, opt_state, images, labels, index, step):  # type: ignore[no-untyped-def]
        def loss_fn(p):  # type: ignore[no-untyped-def]
            model = nnx.merge(graphdef, p, stats, constants)
            logits = model((images[index].astype(jnp.float32) - mean) / 255.0, True, jax.random.fold_in(key, step))
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels[index]).mean(), \
                nnx.state(model, nnx.BatchStat)
        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), stats, opt_state, loss

    @jax.jit
    def evaluate(params, stats, val_images, val_labels, start):  # type: ignore[no-untyped-def]
        model = nnx.merge(graphdef, params, stats, constants)
        x = jax.lax.dynamic_slice_in_dim(val_images, start, batch_size * 2)
        y = jax.lax.dynamic_slice_in_dim(val_labels, start, batch_size * 2)
        logits = model((x.astype(jnp.float32) - mean) / 255.0, False, key)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).sum()

    count, val_count = len(labels), len(val_labels)
    for epoch in range(epochs):
        order = np.random.default_rng(SEED + epoch).permutation(count)
        for i in range(math.ceil(count / batch_size)):
            index = jnp.asarray(np.sort(order[i * batch_size:(i + 1) * batch_size]).astype(np.int32))
            params, stats, opt_state, loss = step(params, stats, opt_state, images, labels, index, epoch * 1000 + i)
        total = sum(evaluate(params, stats, val_images, val_labels, min(start, val_count - batch_size * 2))
                    for start in range(0, val_count, batch_size * 2))
        float(total)
    float(loss)


def make_job(dataset: Dataset, owner, network: str, epochs: int, batch_size: int, backend: str) -> TrainingJob:  # type: ignore[no-untyped-def]
    shape = tuple(dataset.image_shape)
    job = TrainingJob.objects.create(
        owner=owner, dataset=dataset, name=f"{network} bench", network=network, backend=backend,
        network_spec=builtin_spec(network, shape, len(dataset.classes)), epochs=epochs, batch_size=batch_size,
        optimizer="sgd", learning_rate=LR, momentum=MOMENTUM, seed=SEED, device="cpu",
        status=TrainingJob.Status.QUEUED)
    job.folder.mkdir(parents=True, exist_ok=True)
    return job


def run_job(job: TrainingJob, backend) -> DatabaseReporter:  # type: ignore[no-untyped-def]
    """As the worker runs it (jobs.services._train_claimed): claimed through a lease, a heartbeat beside the reporter."""
    lease = lease_claim(TrainingJob, job.pk, stop_field="abort_requested")
    if lease is None:
        raise RuntimeError("the bench job could not be claimed")
    reporter = DatabaseReporter(lease)
    with heartbeat(lease):
        reporter.start()
        try:
            outcome = backend.train(training_plan(job), reporter)
        finally:
            reporter.close()
    if outcome != "done":
        raise RuntimeError(f"the backend run ended {outcome}")
    return reporter


def run_backend(dataset: Dataset, owner, network: str, epochs: int, batch_size: int) -> None:  # type: ignore[no-untyped-def]
    run_job(make_job(dataset, owner, network, epochs, batch_size, "jax"), JaxBackend("jax", {}))


# --- the report -----------------------------------------------------------------------------

def compare(dataset: Dataset, owner, network: str, args: argparse.Namespace):  # type: ignore[no-untyped-def]
    samples = args.epochs * dataset.split_counts["train"]
    rows: dict[str, list[tuple[float, float]]] = {"bare": [], "backend": []}
    if not args.tiny:  # warm-up: first-call costs of the ORM, the reporter, jax's own start
        run_bare(dataset, network, 1, args.batch_size)
        run_backend(dataset, owner, network, 1, args.batch_size)
    for rep in range(args.repeat):
        rows["bare"].append(timed(lambda: run_bare(dataset, network, args.epochs, args.batch_size)))
        rows["backend"].append(timed(lambda: run_backend(dataset, owner, network, args.epochs, args.batch_size)))
        (bare_s, bare_c), (back_s, back_c) = rows["bare"][-1], rows["backend"][-1]
        print(f"  {network} run {rep + 1}: bare {samples / (bare_s - bare_c):8.0f} samples/s (compile {bare_c:.2f} s)"
              f"   backend {samples / (back_s - back_c):8.0f} samples/s (compile {back_c:.2f} s)", flush=True)
    return samples, rows


def accuracy(dataset: Dataset, owner, epochs: int, batch_size: int) -> None:  # type: ignore[no-untyped-def]
    from training.torch.backend import TorchBackend  # imported only here: the overhead runs never load torch

    for alias, backend in (("jax", JaxBackend("jax", {})), ("torch", TorchBackend("torch", {"threads": 0}))):
        job = make_job(dataset, owner, "lenet", epochs, batch_size, alias)
        seconds, _ = timed(lambda job=job, backend=backend: run_job(job, backend))
        job.refresh_from_db()
        print(f"accuracy {alias:5s} lenet {epochs} epochs: val accuracy {job.latest['val_accuracy']:.4f}, "
              f"val loss {job.latest['val_loss']:.4f} ({seconds:.1f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", default="lenet,mlp")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="XLA CPU threads for both (0: its default)")
    parser.add_argument("--accuracy", action="store_true", help="also LeNet's val accuracy, jax against torch")
    parser.add_argument("--accuracy-epochs", type=int, default=10)
    parser.add_argument("--tiny", action="store_true", help="seconds, not a figure: a check that it still runs")
    args = parser.parse_args()
    if args.tiny:
        args.epochs, args.repeat = 1, 1
    call_command("migrate", verbosity=0)
    owner = get_user_model().objects.create_user("bench", password="bench-password")
    dataset = ingest_digits(owner, args.size, Path(_TMP.name), SEED)
    print(f"digits {args.size}x{args.size} grayscale: {dataset.split_counts}; batch {args.batch_size}, "
          f"{args.epochs} epochs, {args.repeat} runs each, JAX {jax.__version__} on {jax.devices()[0]}, "
          f"XLA threads {args.threads or 'default'}", flush=True)
    results = {name: compare(dataset, owner, name, args) for name in args.networks.split(",")}
    print("\nnetwork  bare samples/s  backend samples/s  backend/bare: medians  paired median  best/best"
          "  | compile s: bare  backend")
    for name, (samples, rows) in results.items():
        bare = [samples / (s - c) for s, c in rows["bare"]]
        backend = [samples / (s - c) for s, c in rows["backend"]]
        paired = statistics.median(b / a for a, b in zip(bare, backend))
        print(f"{name:8s} {statistics.median(bare):14.0f} {statistics.median(backend):18.0f} "
              f"{statistics.median(backend) / statistics.median(bare):22.3f} {paired:14.3f} "
              f"{max(backend) / max(bare):10.3f}  | {statistics.median(c for _, c in rows['bare']):10.2f} "
              f"{statistics.median(c for _, c in rows['backend']):8.2f}")
    if args.accuracy or args.tiny:
        accuracy(dataset, owner, 1 if args.tiny else args.accuracy_epochs, args.batch_size)


if __name__ == "__main__":
    try:
        main()
    finally:
        from django.db import connections

        connections.close_all()
        _TMP.cleanup()
