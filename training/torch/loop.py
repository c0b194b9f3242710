"""The PyTorch backend's work: trains from the dataset's memory-mapped arrays, snapshots as safetensors.

Imported only on workers, by `training.torch.backend.TorchBackend`'s calls; the web process never loads torch.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from networks.spec import HEAD_TASKS
from training.augmentation import augmentation_from_stored
from training.contract import Reporter, TrainingFailed, TrainingPlan
from training.schedules import learning_rate
from training.torch.augment import Augmenter, mean_to_subtract
from training.torch.build import build_model
from training.torch.compile import CompiledModel
from training.torch.data import Prefetcher, Split
from training.torch.models import model_metadata
from training.torch.optim import copy_pretrained, make_optimizer, param_groups
from training.torch.precision import Precision
from training.torch.ranks import Solo
from training.torch.snapshots import (
    SnapshotWriter,
    flatten_optimizer,
    rng_state,
    set_rng_state,
    snapshot_meta,
    unflatten_optimizer,
)
from training.torch.tensorfile import write_safetensors
from training.torch.vision_tasks import torch_task
from training.vision_tasks import vision_task
from workbench import faults
from workbench.files import remove_leftovers

_RANK_SEED_STEP = 1_000_003  # rank r of a job draws from seed + r times this


# --- one training run -----------------------------------------------------------------------

class _Run:
    """One training run, or one rank of it (`ranks`: training.torch.ranks)."""

    def __init__(self, plan: TrainingPlan, reporter: Reporter, device: torch.device, ranks: Solo | None = None) -> None:
        self.plan, self.reporter, self.device = plan, reporter, device
        self.ranks = ranks or Solo()
        seed = plan.seed + _RANK_SEED_STEP * self.ranks.rank  # rank 0 draws what one process draws
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        if missing := vision_task(plan.task).missing_files(plan.dataset_folder):
            raise TrainingFailed(f"The dataset's files are missing on this worker: {', '.join(missing)} (in "
                                 f"{plan.dataset_folder}). Ingest the dataset again, or check the data folder.")
        self.task = torch_task(plan.task)  # the vision task's loss, batches and validation
        labels = self.task.label_array  # class indices, segmentation masks or detection boxes
        self.train_split = Split.open(plan.dataset_folder, "train", device, forced=plan.data_placement, labels=labels)
        self.val_split = Split.open(plan.dataset_folder, "val", device, forced=plan.data_placement, labels=labels)
        spec = augmentation_from_stored(plan.augmentation)
        self.mean = mean_to_subtract(spec.mean, torch.from_numpy(np.load(plan.dataset_folder / "mean.npy"))).to(device)
        # Its own generator: dropout and shuffling draw what they drew before augmentation existed.
        self.augment = Augmenter(spec, seed, device) if spec.active else None
        outputs = vision_task(plan.task).outputs(plan.classes)  # the task's head: one score per class
        # With the task: a spec whose head does not fit it fails here with the networks' own message
        # (a task without a head rule, a test's toy task, takes any head).
        head = plan.task if plan.task in HEAD_TASKS else None
        self.model = build_model(plan.network_spec, plan.input_shape, outputs, task=head).to(device)
        self.task.prepare(self.model, plan)  # before pretrained or resumed weights are loaded over it
        self.precision = Precision(plan.amp, device)
        # `net` is the network itself: its weights are snapshotted, validated, resumed. `model` is
        # what trains: the same network, wrapped by DDP when there are several ranks; `compiled`
        # runs it, through torch.compile when the plan asks.
        self.net = self.ranks.local(self.precision.prepare(self.model))
        self.optimizer = make_optimizer(plan, param_groups(self.net, plan))
        self.model = self.ranks.wrap(self.net, device, some_frozen=bool(plan.pretrained) and plan.freeze_epochs != 0)
        self.compiled = CompiledModel(self.model, reporter, plan.compile)
        self.batches = Prefetcher(self.train_split, device)
        self.lr = plan.learning_rate
        self._lr_key: tuple[float, bool] | None = None  # the (rate, frozen) the param groups were last set for
        # The train loss is the mean over the steps since it was last reported; kept here (not in
        # the loop) so that a snapshot carries it and a resumed run reports the same numbers.
        self.running, self.count = torch.zeros((), device=device), 0
        self.loss_fn = self.task.loss(plan)
        # A loss made of parts (detection's heatmap, size, offset) names them in `part_names` and
        # leaves each call's in `parts`: each is reported as its own train curve, averaged as `loss` is.
        self.part_names: tuple[str, ...] = tuple(getattr(self.loss_fn, "part_names", ()))
        self.running_parts = torch.zeros(len(self.part_names), device=device)
        self.steps_per_epoch = max(1, math.ceil(len(self.train_split) / plan.batch_size))
        self.total_steps = plan.epochs * self.steps_per_epoch
        self.log_every = max(1, self.steps_per_epoch // 20)
        self.val_every = max(1, round(plan.val_interval * self.steps_per_epoch))
        self.snapshot_every = max(1, round(plan.snapshot_interval * self.steps_per_epoch))

    def train(self) -> str:
        self.reporter.using_device(", ".join(self.plan.devices) if self.ranks.size > 1 else str(self.device))
        if self.plan.pretrained and self.plan.resume_from_epoch is None:
            # A resumed fine-tune loads its own snapshot (below), never the pretrained weights again.
            self.reporter.log(copy_pretrained(self.net, self.plan.pretrained))
        start = self._resume()
        on = f"{self.ranks.size} processes ({', '.join(self.plan.devices)})" if self.ranks.size > 1 else self.device
        self.reporter.log(f"Training {len(self.train_split)} images, {self.steps_per_epoch} steps per epoch, "
                          f"{self.plan.epochs} epochs on {on}.")
        if (slow := self.precision.warning()) and self.ranks.leader:
            self.reporter.log(slow)
        with SnapshotWriter(self._write_snapshot) as self.snapshots, self.batches:
            if self.ranks.leader:
                self.snapshots.first(self._write_model_files)
            finished = all(self._train_epoch(epoch, start)
                           for epoch in range(start // self.steps_per_epoch, self.plan.epochs))
        self.reporter.log("Done." if finished else "Aborted.")
        return "done" if finished else "aborted"

    def _train_epoch(self, epoch: int, start: int) -> bool:
        self.model.train()
        order = torch.randperm(len(self.train_split), generator=torch.Generator().manual_seed(self.plan.seed + epoch))
        first = epoch * self.steps_per_epoch
        if start <= first:
            self._zero_running()
        size, begin = self.plan.batch_size, max(start - first, 0)
        batches = [order[i * size : (i + 1) * size] for i in range(begin, self.steps_per_epoch)]
        shards = [self.ranks.shard(batch) for batch in batches]  # this rank's part of each (all of it alone)
        self.batches.plan(shards)
        for i, batch, shard in zip(range(begin, self.steps_per_epoch), batches, shards):
            if self.ranks.should_stop(self.reporter):
                return False
            step = first + i + 1
            lr = self._set_lr((step - 1) / self.steps_per_epoch)
            self.running += self._step(shard, len(batch), i)
            self.count += 1
            if step % self.log_every == 0 or i == self.steps_per_epoch - 1:
                self._report_train(self.ranks.mean(self.running).item() / self.count, lr, step)
                self._zero_running()
            if step % self.val_every == 0 or step == self.total_steps:
                self._validate(step)
            if step % self.snapshot_every == 0 or step == self.total_steps:
                self._snapshot(step)
        return True

    def _step(self, index: torch.Tensor, batch_size: int, i: int) -> torch.Tensor:
        """Batch `i` of the epoch (of `batch_size` images, `index` this rank's): its gradient is added
        to its group's; the group's last batch steps the optimizer. A group is `accumulate` batches,
        the epoch's last one maybe fewer."""
        x, y = self.batches.get(index)
        x, y = self.train_batch(x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True))
        x = self.precision.input(x)
        group_start = i - i % self.plan.accumulate
        group = min(self.plan.accumulate, self.steps_per_epoch - group_start)
        scale = self.ranks.loss_scale(batch_size)
        last = i + 1 == group_start + group
        with self.ranks.accumulating(self.model, last):
            loss = self.compiled.first_step(lambda: self._forward_backward(x, y, group, scale))
        if self.part_names:
            parts = self.loss_fn.parts
            self.running_parts += torch.stack([parts[name] for name in self.part_names]).float() * scale
        if last:
            self.precision.unscale(self.optimizer)  # so that clipping sees the true gradients
            if self.plan.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.plan.grad_clip)
            self.precision.step(self.optimizer)
            self.optimizer.zero_grad(set_to_none=True)
        return loss.detach().float()

    def _forward_backward(self, x: torch.Tensor, y: torch.Tensor, group: int, scale: float) -> torch.Tensor:
        with self.precision.autocast():
            loss = self.loss_fn(self.compiled(x), y)
        if scale != 1.0:  # one rank of several: its share of the batch (torch_ranks.loss_scale)
            loss = loss * scale
        if loss.requires_grad:  # not when every weight is frozen
            self.precision.backward(loss / group if group > 1 else loss)
        return loss

    def train_input(self, pixels: torch.Tensor) -> torch.Tensor:
        """A uint8 training batch on the device as the network sees it: augmented, mean subtracted."""
        if self.augment is None:
            return (pixels.float() - self.mean) / 255.0  # bit for bit what it was before augmentation
        return self.augment(pixels) - self.mean / 255.0

    def train_batch(self, pixels: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A training batch on the device as the network and the loss see it: the task augments it
        (a segmentation mask moves with its image) and says what the loss takes as labels."""
        if self.augment is None:
            return self.train_input(pixels), self.task.targets(labels)
        x, labels = self.task.augment(self.augment, pixels, labels, self.plan)
        return x - self.mean / 255.0, self.task.targets(labels)

    def _zero_running(self) -> None:
        self.running.zero_()
        self.running_parts.zero_()
        self.count = 0

    def _set_lr(self, epoch: float) -> float:
        p = self.plan
        lr = learning_rate(p.lr_policy, p.learning_rate, epoch, p.epochs, p.lr_params)
        frozen = bool(p.pretrained) and (p.freeze_epochs < 0 or epoch < p.freeze_epochs)
        if (lr, frozen) != self._lr_key:  # most policies hold the rate for many steps; skip the writes
            for group in self.optimizer.param_groups:
                pretrained = group.get("pretrained", False)
                # Frozen: rate 0 and no gradient, so the optimizer's state layout never changes.
                group["lr"] = 0.0 if frozen and pretrained else lr * group.get("lr_mult", 1.0)
                for param in group["params"]:
                    param.requires_grad_(not (frozen and pretrained))
            self.lr, self._lr_key = lr, (lr, frozen)
        return lr

    def _report_train(self, loss: float, lr: float, step: int) -> None:
        epoch = step / self.steps_per_epoch
        if not math.isfinite(loss):
            raise TrainingFailed(
                f"The loss diverged ({loss}) at epoch {epoch:.2f}, step {step}. The learning rate "
                f"{self.plan.learning_rate:g} is probably too high: try {self.plan.learning_rate / 10:g} or lower.")
        self.reporter.metric(split="train", name="loss", value=loss, epoch=epoch, step=step)
        if self.part_names:
            parts = (self.ranks.mean(self.running_parts) / self.count).tolist()
            for name, value in zip(self.part_names, parts):
                self.reporter.metric(split="train", name=name, value=value, epoch=epoch, step=step)
        self.reporter.metric(split="train", name="lr", value=lr, epoch=epoch, step=step)
        self.reporter.progress(epoch=epoch, step=step, total_steps=self.total_steps)

    def _validate(self, step: int) -> None:
        if len(self.val_split) == 0 or not self.ranks.leader:  # the other ranks go on to the next step's all-reduce
            return
        metrics = self.task.validate(self.net, self.val_split, self.mean, self.device, self.plan.batch_size * 2,
                                     self.plan)
        epoch = step / self.steps_per_epoch
        for name, value in metrics.items():
            self.reporter.metric(split="val", name=name, value=value, epoch=epoch, step=step)
        shown = ", ".join(f"val {name} {value:.4f}" if name == "loss" else f"val {name} {value:.2%}"
                          for name, value in metrics.items())
        self.reporter.log(f"epoch {epoch:.2f}: {shown}")
        self.model.train()

    # --- snapshots and resume ---------------------------------------------------------------
    def _write_model_files(self) -> None:
        """The model's description and mean beside its snapshots; on the snapshot writer's thread,
        before any snapshot, so a fast first epoch does not wait for their fsyncs."""
        folder = self.plan.output_folder
        (folder / "snapshots").mkdir(parents=True, exist_ok=True)
        remove_leftovers(folder / "snapshots")  # what a killed attempt was writing
        description = json.dumps(model_metadata(self.plan), indent=2).encode()
        mean = {"mean": self.mean.cpu().contiguous()}
        self.snapshots.write_together({folder / "model.json": lambda path: path.write_bytes(description),
                                       folder / "mean.safetensors": lambda path: save_file(mean, path)})

    def _snapshot(self, step: int) -> None:
        """Copy the weights, optimizer and loop state now; write them while the next steps run."""
        ranks = self.ranks.gather(self._rank_state())  # collectives first: every rank joins them
        running = float(self.ranks.mean(self.running).item())  # every rank resumes with the mean
        parts = self.ranks.mean(self.running_parts).tolist() if self.part_names else None
        self.ranks.share_gradients(self.net)  # a group's pending gradients: the same on every rank
        if not self.ranks.leader:
            return
        tensors, state = flatten_optimizer(self.optimizer.state_dict())
        state = {**state, **ranks[0], "running_loss": running, "running_count": self.count}
        if parts is not None:
            state["running_parts"] = parts
        if self.ranks.size > 1:
            state["ranks"] = ranks[1:]  # each other rank's generators, for a faithful resume
        if self.precision.scaler is not None:
            state["grad_scaler"] = self.precision.scaler.state_dict()
        # Taken inside a group of accumulated batches: its gradients so far go with it.
        tensors.update({f"grad.{name}": p.grad.detach() for name, p in self.net.named_parameters()
                        if p.grad is not None})
        self.snapshots.submit(round(step / self.steps_per_epoch, 4), step, self.net.state_dict(), tensors, state)

    def _rank_state(self) -> dict[str, Any]:
        """This rank's random generators (dropout, shuffling helpers, augmentation)."""
        state: dict[str, Any] = {"rng": rng_state(self.device)}
        if self.augment is not None:
            state["augment_rng"] = self.augment.state()
        return state

    def _write_snapshot(self, epoch: float, step: int, weights: dict[str, torch.Tensor],
                        tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        name = self.plan.output_folder / f"snapshots/epoch_{epoch:g}"
        meta = json.dumps(snapshot_meta(epoch, step, state)).encode()
        # Each file is written under a temporary name and fsynced, then all are renamed: a kill
        # mid-write leaves no half file. Not safetensors' save(): it holds the GIL
        # through its copies.
        self.snapshots.write_together({
            Path(f"{name}.safetensors"): lambda path: write_safetensors(path, weights),
            Path(f"{name}.optim.safetensors"): lambda path: write_safetensors(path, tensors),
            Path(f"{name}.json"): lambda path: path.write_bytes(meta),
        }, before_replace=lambda: self._before_replace(epoch))
        # Reported only once all its files are whole: resume trusts every snapshot row it finds.
        self.reporter.snapshot(epoch=epoch, path=f"snapshots/epoch_{epoch:g}.safetensors", step=step)
        self.reporter.log(f"Snapshot at epoch {epoch:g}.")

    def _before_replace(self, epoch: float) -> None:
        faults.pause(f"snapshot:{epoch:g}")
        self._still_ours()

    def _still_ours(self) -> None:
        """Before a snapshot file replaces another: a run that lost its job raises here, so it can
        never overwrite what a newer attempt wrote."""
        self.reporter.should_stop()

    def _resume(self) -> int:
        epoch = self.plan.resume_from_epoch
        if epoch is None:
            return 0
        name = self.plan.output_folder / f"snapshots/epoch_{round(epoch, 4):g}"
        self.net.load_state_dict(load_file(f"{name}.safetensors"))
        meta = json.loads(Path(f"{name}.json").read_text())
        tensors = load_file(f"{name}.optim.safetensors", device=str(self.device))
        grads = {key.removeprefix("grad."): tensors.pop(key) for key in list(tensors) if key.startswith("grad.")}
        self.optimizer.load_state_dict(unflatten_optimizer(tensors, meta["optimizer"]))
        for param_name, p in self.net.named_parameters():
            if param_name in grads:
                p.grad = grads[param_name]
        self.lr = self.optimizer.param_groups[0]["lr"]
        if "running_loss" in meta:  # kept since the generators were (older snapshots resume without either)
            self.running.fill_(meta["running_loss"])
            self.count = int(meta["running_count"])
        if self.part_names and "running_parts" in meta:
            self.running_parts.copy_(torch.tensor(meta["running_parts"], device=self.device))
        mine = meta
        if self.ranks.rank:  # another rank: its own generators, kept by rank 0 in the snapshot
            others = meta.get("ranks", [])
            mine = others[self.ranks.rank - 1] if len(others) >= self.ranks.rank else {}
        if "rng" in mine:
            set_rng_state(mine["rng"], self.device)
        if self.augment is not None and "augment_rng" in mine:
            self.augment.load_state(mine["augment_rng"])
        self.precision.load_state(meta.get("grad_scaler"))
        self.reporter.log(f"Resumed from the snapshot at epoch {epoch:g} (step {meta['step']}).")
        return int(meta["step"])
