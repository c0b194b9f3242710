"""The JAX backend's training run: the torch backend's behaviour (training/torch/loop.py) as a user
sees it, with jit-compiled steps. Imported only on workers, by JaxBackend.train.

The same plan, the same schedule code, the same reports (train loss and rate about 20 times an
epoch, val loss and accuracy at each validation, progress), the same divergence message, abort
checked every step, snapshots as safetensors + JSON, resume, seeds.
"""
from __future__ import annotations

import json
import math
from collections import deque
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors.numpy import load_file

from datasets.ingest.store import open_split
from training.augmentation import augmentation_from_stored
from training.contract import Reporter, TrainingFailed, TrainingPlan
from training.jax.build import _name, build_model, load_weights
from training.jax.devices import jax_device
from training.jax.models import mean_to_subtract, model_metadata
from training.jax.optim import make_transform
from training.jax.snapshots import SnapshotWriter, flatten_tree, save_arrays, unflatten_tree
from training.jax.steps import StepSettings, make_steps, split_model
from training.schedules import learning_rate
from training.vision_tasks import vision_task
from workbench import faults
from workbench.files import remove_leftovers, write_together

PRELOAD_BYTES = 2 * 1024**3  # a split up to this is put on the device once; larger ones are gathered per batch


class Split:
    """A split's pixels and labels: on the device whole, or (large) gathered per batch from the memory map."""

    def __init__(self, folder: Path, name: str, device: jax.Device) -> None:
        images, labels = open_split(folder, name)
        self.device, self.size = device, len(labels)
        self.on_device = images.nbytes <= PRELOAD_BYTES
        self.labels_host = labels.astype(np.int32)
        self.images_host = images
        if self.on_device:
            self.images = jax.device_put(np.asarray(images), device)
            self.labels = jax.device_put(self.labels_host, device)

    def __len__(self) -> int:
        return self.size

    def batch(self, index: np.ndarray) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(images, labels, index into them) for a step: the whole split and the index, or the batch itself."""
        if self.on_device:
            return self.images, self.labels, jax.device_put(index.astype(np.int32), self.device)
        gathered = jax.device_put(np.asarray(self.images_host[index]), self.device)
        labels = jax.device_put(self.labels_host[index], self.device)
        return gathered, labels, jax.device_put(np.arange(len(index), dtype=np.int32), self.device)


class Run:
    def __init__(self, plan: TrainingPlan, reporter: Reporter) -> None:
        self.plan, self.reporter = plan, reporter
        if missing := vision_task(plan.task).missing_files(plan.dataset_folder):
            raise TrainingFailed(f"The dataset's files are missing on this worker: {', '.join(missing)} (in "
                                 f"{plan.dataset_folder}). Ingest the dataset again, or check the data folder.")
        self.device = jax_device(plan.devices[0] if plan.devices else plan.device)
        self.train_split = Split(plan.dataset_folder, "train", self.device)
        self.val_split = Split(plan.dataset_folder, "val", self.device)
        spec = augmentation_from_stored(plan.augmentation)
        self.mean_host = mean_to_subtract(spec.mean, np.load(plan.dataset_folder / "mean.npy"))
        self.mean = jax.device_put(self.mean_host, self.device)
        outputs = vision_task(plan.task).outputs(plan.classes)
        with jax.default_device(self.device):
            self.model = build_model(plan.network_spec, plan.input_shape, outputs, seed=plan.seed, task=plan.task)
        self.tx = make_transform(plan)
        self.settings = StepSettings(spec if spec.active else None, plan.label_smoothing, plan.grad_clip)
        self.steps_per_epoch = max(1, math.ceil(len(self.train_split) / plan.batch_size))
        self.total_steps = plan.epochs * self.steps_per_epoch
        self.log_every = max(1, self.steps_per_epoch // 20)
        self.val_every = max(1, round(plan.val_interval * self.steps_per_epoch))
        self.snapshot_every = max(1, round(plan.snapshot_interval * self.steps_per_epoch))
        self.running, self.count = jnp.zeros(()), 0
        self.pending: Any = None  # a group's accumulated gradients, until its last batch steps the optimizer
        # Train reports whose loss is not read yet: (running sum, steps, rate, step), oldest first.
        self._unread: deque[tuple[jax.Array, int, float, int]] = deque()
        self._zero = jnp.zeros(())

    # --- the run ------------------------------------------------------------------------------
    def train(self) -> str:
        self.reporter.using_device(str(self.device.platform if self.device.platform != "gpu" else self.device))
        log = self._pretrained() if self.plan.pretrained and self.plan.resume_from_epoch is None else None
        graphdef, self.params, self.stats, constants = split_model(self.model)
        self.opt_state = self.tx.init(self.params)
        steps = make_steps(graphdef, constants, self.tx, self.settings, self.plan.seed)
        self.train_step, self.grad_step, self.apply_step, self.eval_step = steps
        if log:
            self.reporter.log(log)
        start = self._resume()
        self.reporter.log(f"Training {len(self.train_split)} images, {self.steps_per_epoch} steps per epoch, "
                          f"{self.plan.epochs} epochs on {self.device} (JAX {jax.__version__}).")
        with SnapshotWriter() as self.snapshots:
            self.snapshots.submit(self._write_model_files)
            finished = all(self._train_epoch(epoch, start)
                           for epoch in range(start // self.steps_per_epoch, self.plan.epochs))
        self.reporter.log("Done." if finished else "Aborted.")
        return "done" if finished else "aborted"

    def _train_epoch(self, epoch: int, start: int) -> bool:
        order = np.random.default_rng(self.plan.seed + epoch).permutation(len(self.train_split))
        first, size = epoch * self.steps_per_epoch, self.plan.batch_size
        if start <= first:
            self.running, self.count = self._zero, 0
        for i in range(max(start - first, 0), self.steps_per_epoch):
            if self.reporter.should_stop():
                self._flush_report()
                return False
            step = first + i + 1
            lr = self._lr((step - 1) / self.steps_per_epoch)
            self._step(np.sort(order[i * size:(i + 1) * size]), i, step, lr)
            self.count += 1
            # Reports are read once their loss is computed, never waiting for it: the steps queued
            # behind keep the device busy while Python reports (validation and snapshots read all).
            self._flush_report(wait=False)
            if step % self.log_every == 0 or i == self.steps_per_epoch - 1:
                self._unread.append((self.running, self.count, lr, step))
                self.running, self.count = self._zero, 0
            if step % self.val_every == 0 or step == self.total_steps:
                self._flush_report()
                self._validate(step)
            if step % self.snapshot_every == 0 or step == self.total_steps:
                self._flush_report()
                self._snapshot(step)
        self._flush_report()
        return True

    def _flush_report(self, wait: bool = True) -> None:
        while self._unread and (wait or self._unread[0][0].is_ready()):
            running, count, lr, step = self._unread.popleft()
            self._report_train(float(running) / count, lr, step)

    def _step(self, index: np.ndarray, i: int, step: int, lr: float) -> None:
        """Queue step `step`; its loss is added to the running sum on the device."""
        images, labels, where = self.train_split.batch(index)
        mult = self._multipliers((step - 1) / self.steps_per_epoch)
        if self.plan.accumulate == 1:
            self.params, self.stats, self.opt_state, self.running = self.train_step(
                self.params, self.stats, self.opt_state, images, labels, where, self.mean, np.float32(lr),
                np.int32(step), mult, self.running)
            return
        # A group is `accumulate` batches (the epoch's last maybe fewer), each loss / group, as torch's loop.
        group_start = i - i % self.plan.accumulate
        group = min(self.plan.accumulate, self.steps_per_epoch - group_start)
        loss, grads, self.stats = self.grad_step(self.params, self.stats, images, labels, where, self.mean,
                                                 jnp.int32(step), jnp.float32(1.0 / group))
        self.pending = grads if self.pending is None else jax.tree.map(jnp.add, self.pending, grads)
        if i + 1 == group_start + group:
            self.params, self.opt_state = self.apply_step(self.params, self.opt_state, self.pending, jnp.float32(lr), mult)
            self.pending = None
        self.running = self.running + loss

    def _lr(self, epoch: float) -> float:
        p = self.plan
        return learning_rate(p.lr_policy, p.learning_rate, epoch, p.epochs, p.lr_params)

    def _report_train(self, loss: float, lr: float, step: int) -> None:
        epoch = step / self.steps_per_epoch
        if not math.isfinite(loss):
            raise TrainingFailed(
                f"The loss diverged ({loss}) at epoch {epoch:.2f}, step {step}. The learning rate "
                f"{self.plan.learning_rate:g} is probably too high: try {self.plan.learning_rate / 10:g} or lower.")
        self.reporter.metric(split="train", name="loss", value=loss, epoch=epoch, step=step)
        self.reporter.metric(split="train", name="lr", value=lr, epoch=epoch, step=step)
        self.reporter.progress(epoch=epoch, step=step, total_steps=self.total_steps)

    def _validate(self, step: int) -> None:
        split = self.val_split
        if len(split) == 0:
            return
        size = self.plan.batch_size * 2  # every batch padded to this size: one compiled step
        total_loss, correct = jnp.zeros(()), jnp.zeros((), jnp.int32)
        for begin in range(0, len(split), size):
            rows = np.arange(begin, min(begin + size, len(split)))
            padded = np.concatenate([rows, np.full(size - len(rows), rows[0])])
            images, labels, where = split.batch(padded) if split.on_device else split.batch(rows)
            valid = np.arange(len(where)) < len(rows)
            loss, right = self.eval_step(self.params, self.stats, images, labels, where, jnp.asarray(valid), self.mean)
            total_loss, correct = total_loss + loss, correct + right
        metrics = {"loss": float(total_loss) / len(split), "accuracy": int(correct) / len(split)}
        epoch = step / self.steps_per_epoch
        for name, value in metrics.items():
            self.reporter.metric(split="val", name=name, value=value, epoch=epoch, step=step)
        self.reporter.log(f"epoch {epoch:.2f}: val loss {metrics['loss']:.4f}, val accuracy {metrics['accuracy']:.2%}")

    # --- pretrained weights ------------------------------------------------------------------------
    def _pretrained(self) -> str:
        pretrained = self.plan.pretrained
        try:
            source = load_file(pretrained["weights"])
        except FileNotFoundError:
            raise TrainingFailed(f"The weights of {pretrained.get('label') or 'the pretrained model'} are gone "
                                 "(deleted since the job was queued).") from None
        copy = set(pretrained["copy"])
        from training.jax.build import named_weights

        current = named_weights(self.model)
        for name in copy:
            if name not in source or name not in current or source[name].shape != tuple(current[name].shape):
                raise TrainingFailed(f"The pretrained weights changed since the job was queued: {name!r} no longer fits.")
        load_weights(self.model, {**current, **{name: source[name] for name in copy}})
        remade = [n for n in current if n not in copy and n in source]
        return (f"Copied {len(copy)} tensors from {pretrained.get('label') or 'the pretrained weights'}; "
                f"re-made {len(remade)}; {len(current) - len(copy) - len(remade)} left new.")

    def _multipliers(self, epoch: float) -> Any:
        """Each weight's rate multiplier: the pretrained ones' (0 while frozen), 1 for the rest; None without pretrained."""
        p = self.plan
        if not p.pretrained:
            return None
        frozen = p.freeze_epochs < 0 or epoch < p.freeze_epochs
        copied = set(p.pretrained.get("copy", ()))
        flat = nnx.to_flat_state(self.params)
        values = [0.0 if frozen and _name(path) in copied else p.pretrained_lr_mult if _name(path) in copied else 1.0
                  for path, _ in flat]
        return jax.tree.unflatten(jax.tree.structure(self.params), [jnp.float32(v) for v in values])

    # --- snapshots and resume ----------------------------------------------------------------------
    def _write_model_files(self) -> None:
        folder = self.plan.output_folder
        (folder / "snapshots").mkdir(parents=True, exist_ok=True)
        remove_leftovers(folder / "snapshots")  # what a killed attempt was writing
        description = json.dumps(model_metadata(self.plan), indent=2).encode()
        write_together({folder / "model.json": lambda path: path.write_bytes(description),
                        folder / "mean.safetensors": save_arrays({"mean": self.mean_host})})

    def _named(self) -> dict[str, jax.Array]:
        return {_name(path): value[...]
                for state in (self.params, self.stats) for path, value in nnx.to_flat_state(state)}

    def _snapshot(self, step: int) -> None:
        """The arrays of this step (immutable: the next steps make new ones) are written on the writer's thread."""
        epoch = round(step / self.steps_per_epoch, 4)
        optimizer, paths = flatten_tree(self.opt_state)
        if self.pending is not None:
            optimizer.update({f"grad.{_name(path)}": v[...] for path, v in nnx.to_flat_state(self.pending)})
        meta = {"epoch": epoch, "step": step, "optimizer": {"kind": self.plan.optimizer, "leaves": paths},
                "rng": {"seed": self.plan.seed, "step": step},
                "running_loss": float(self.running), "running_count": self.count, "backend": "jax"}
        weights = self._named()
        self.snapshots.submit(lambda: self._write_snapshot(epoch, step, weights, optimizer, meta))

    def _write_snapshot(self, epoch: float, step: int, weights: dict[str, Any], optimizer: dict[str, Any],
                        meta: dict[str, Any]) -> None:
        name = self.plan.output_folder / f"snapshots/epoch_{epoch:g}"
        text = json.dumps(meta).encode()
        write_together({Path(f"{name}.safetensors"): save_arrays(weights),
                        Path(f"{name}.optim.safetensors"): save_arrays(optimizer),
                        Path(f"{name}.json"): lambda path: path.write_bytes(text)},
                       before_replace=lambda: self._before_replace(epoch))
        self.reporter.snapshot(epoch=epoch, path=f"snapshots/epoch_{epoch:g}.safetensors", step=step)
        self.reporter.log(f"Snapshot at epoch {epoch:g}.")

    def _before_replace(self, epoch: float) -> None:
        faults.pause(f"snapshot:{epoch:g}")
        self.reporter.should_stop()  # a run that lost its job raises here, never overwriting a newer attempt's files

    def _resume(self) -> int:
        epoch = self.plan.resume_from_epoch
        if epoch is None:
            return 0
        name = self.plan.output_folder / f"snapshots/epoch_{round(epoch, 4):g}"
        load_weights(self.model, load_file(f"{name}.safetensors"))
        _, self.params, self.stats, _ = split_model(self.model)
        meta = json.loads(Path(f"{name}.json").read_text())
        arrays = load_file(f"{name}.optim.safetensors")
        self.opt_state = unflatten_tree(self.opt_state, arrays, meta["optimizer"]["leaves"])
        grads = {key.removeprefix("grad."): value for key, value in arrays.items() if key.startswith("grad.")}
        if grads:
            flat = nnx.to_flat_state(self.params)
            self.pending = jax.tree.unflatten(jax.tree.structure(self.params),
                                              [jnp.asarray(grads[_name(path)]) for path, _ in flat])
        self.running, self.count = jnp.asarray(meta["running_loss"], jnp.float32), int(meta["running_count"])
        self.reporter.log(f"Resumed from the snapshot at epoch {epoch:g} (step {meta['step']}).")
        return int(meta["step"])
