"""What changes in the training loop when one job runs as several processes (DDP), and what does not.

`Solo` is one process: every method is the identity, so a one-device run is what it always was,
bit for bit. `Ranks` is one process of several, joined by torch.distributed:

- every rank draws the same epoch order and takes its part of each (global) batch;
- each rank's loss is scaled so that DDP's average of the ranks' gradients is the gradient of the
  whole batch's mean loss: the same as one process with the same batch, whatever the split;
- a group of accumulated batches all-reduces its gradients once, at its last batch (no_sync before);
- rank 0 asks the job's reporter whether to stop and broadcasts the answer, so all ranks stop at
  the same step; it alone validates, logs and snapshots.
"""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.distributed as dist

from training.contract import Reporter


class Solo:
    rank, size, leader = 0, 1, True

    def local(self, net: torch.nn.Module) -> torch.nn.Module:
        return net

    def wrap(self, model: torch.nn.Module, device: torch.device, some_frozen: bool = False) -> torch.nn.Module:
        return model

    def shard(self, index: torch.Tensor) -> torch.Tensor:
        return index

    def accumulating(self, model: torch.nn.Module, last: bool) -> AbstractContextManager[Any]:
        return nullcontext()

    def loss_scale(self, total: int) -> float:
        return 1.0

    def should_stop(self, reporter: Reporter) -> bool:
        return reporter.should_stop()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        return value

    def share_gradients(self, net: torch.nn.Module) -> None:
        pass

    def gather(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        return [state]


class Ranks(Solo):
    def __init__(self, rank: int, size: int, device: torch.device) -> None:
        self.rank, self.size, self.leader = rank, size, rank == 0
        self.device = device
        # The stop flag and the generators' states go over gloo, on the CPU: over NCCL each step's
        # flag would make the host wait for the GPU, and the host could no longer queue work ahead.
        self._control = dist.new_group(backend="gloo") if device.type == "cuda" else None

    def local(self, net: torch.nn.Module) -> torch.nn.Module:
        return synced_batch_norms(net, self.device)

    def wrap(self, model: torch.nn.Module, device: torch.device, some_frozen: bool = False) -> torch.nn.Module:
        """`some_frozen`: pretrained layers are frozen for a while (no gradient): DDP must look for
        the parameters a step leaves without one, at some cost, instead of waiting for them."""
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None,
                                       find_unused_parameters=some_frozen)

    def accumulating(self, model: torch.nn.Module, last: bool) -> AbstractContextManager[Any]:
        """Around a batch's backward: within a group of accumulated batches, the gradients stay on
        each rank (DDP's no_sync) and are all-reduced, summed over the group, at its last batch."""
        return nullcontext() if last else model.no_sync()  # type: ignore[operator]

    def shard(self, index: torch.Tensor) -> torch.Tensor:
        """This rank's part of a global batch: a contiguous run of the sorted indices. A rank left
        with none (a last batch smaller than the ranks) takes the batch's first image, weighted 0 by
        loss_scale, so that every rank still joins the gradient's all-reduce."""
        part = index.sort().values.tensor_split(self.size)[self.rank]
        return part if len(part) else index[:1]

    def loss_scale(self, total: int) -> float:
        """This rank's share of a batch of `total`, times the ranks: its mean loss times this is what
        DDP's average turns into the whole batch's mean."""
        part = len(torch.empty(total).tensor_split(self.size)[self.rank])
        return part * self.size / total

    def should_stop(self, reporter: Reporter) -> bool:
        flag = torch.tensor([int(reporter.should_stop()) if self.leader else 0])
        dist.broadcast(flag, src=0, group=self._control)
        return bool(flag.item())

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean over the ranks (the reported train loss, read on the host anyway)."""
        total = value.detach().clone()
        dist.all_reduce(total)
        return total / self.size

    def share_gradients(self, net: torch.nn.Module) -> None:
        """Inside a group of accumulated batches (no_sync) each rank holds its own partial gradient;
        a snapshot keeps one set. Averaged here, every rank holds the mean, which the group's last
        all-reduce turns into the same result (it averages linearly), and which a resumed run gives
        every rank back. Outside a group there are no gradients and this does nothing."""
        for param in net.parameters():
            if param.grad is not None:
                dist.all_reduce(param.grad)
                param.grad /= self.size

    def gather(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        """Every rank's state (its random generators), in rank order, on every rank."""
        states: list[Any] = [None] * self.size
        dist.all_gather_object(states, state, group=self._control)
        return states

    def barrier(self) -> None:
        """Wait for every rank: the run ends on all of them before any process group goes away."""
        dist.barrier(group=self._control)


def synced_batch_norms(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The network one rank of several holds. On GPUs its batch norms become SyncBatchNorm: their
    statistics are the whole batch's, as in one process, not each rank's share (same weights and
    buffers, so snapshots and resumes do not change; a network without batch norm is returned as it
    is). torch has no SyncBatchNorm on the CPU: gloo ranks keep per-rank statistics."""
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(net) if device.type == "cuda" else net
