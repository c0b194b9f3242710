"""One job on several devices: one process per device, joined by torch.distributed (DDP).

NCCL joins GPUs, gloo joins CPU processes. The worker's task thread is the launcher: it starts one
process per device (`python -m training.torch.distributed`), then relays what rank 0 reports
to the job's reporter over a socket pair. Rank 0 asks the launcher at every step whether to stop
(so abort, the attempt fence and paused reports work as for one process) and broadcasts the answer,
so every rank stops at the same step (training.torch.ranks).

A rank that dies ends the run at once, never a hang: the launcher, which watches every process,
kills the others and raises RunLost; the job is queued again from its last snapshot, as for a
lost worker. A launcher that dies (its worker was killed) closes the socket; rank 0 ends at its
next step and the others with it.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, fields
from datetime import timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from training.contract import Reporter, RunLost, SilentReporter, TrainingFailed, TrainingPlan

_GRACE_SECONDS = 30  # after rank 0 is done, the others have this long to end before they are killed


# --- the launcher (in the worker) -------------------------------------------------------------

def launch(plan: TrainingPlan, reporter: Reporter) -> str:
    """Train `plan` on its devices, one process each; "done" or "aborted" like a one-device run."""
    folder = plan.output_folder / "ranks"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plan.json").write_text(json.dumps(plan_to_json(plan)))
    rendezvous = Path(tempfile.mkdtemp(prefix=f"workbench-ddp-{plan.job_id}-"))
    ours, theirs = socket.socketpair()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for rank, device in enumerate(plan.devices):
            with (folder / f"rank{rank}.log").open("ab") as log:
                args = [sys.executable, "-m", "training.torch.distributed", str(folder / "plan.json"), str(rank),
                        str(rendezvous / "store"), str(theirs.fileno()) if rank == 0 else "-"]
                procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=_rank_env(plan),
                                              pass_fds=(theirs.fileno(),) if rank == 0 else ()))
        theirs.close()
        kind = "NCCL" if plan.devices[0].startswith("cuda") else "gloo"
        reporter.log(f"Started {len(procs)} processes ({kind}): " + ", ".join(
            f"rank {rank} pid {proc.pid} on {device}" for rank, (proc, device) in enumerate(zip(procs, plan.devices))))
        return _Relay(Connection(ours.detach()), procs, plan, reporter).run()
    finally:
        theirs.close()
        ours.close()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        shutil.rmtree(rendezvous, ignore_errors=True)


def _rank_env(plan: TrainingPlan) -> dict[str, str]:
    env = dict(os.environ)
    # Every rank is on this host: talk over loopback, whatever the host name resolves to (a
    # container's may not resolve at all). Set them in the worker's environment to choose otherwise.
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    env.setdefault("NCCL_SOCKET_IFNAME", "lo")
    if not plan.devices[0].startswith("cuda"):  # CPU processes share the cores instead of each taking all
        env["WORKBENCH_RANK_THREADS"] = str(max(1, (os.cpu_count() or 1) // len(plan.devices)))
    return env


class _Relay:
    """Rank 0's reports to the job's reporter; the answer to each of its questions; every process watched."""

    def __init__(self, conn: Connection, procs: list[subprocess.Popen[bytes]], plan: TrainingPlan,
                 reporter: Reporter) -> None:
        self.conn, self.procs, self.plan, self.reporter = conn, procs, plan, reporter
        self.outcome: str | None = None

    def run(self) -> str:
        while self.outcome is None:
            if not self.conn.poll(0.1):
                self._watch()  # quiet: perhaps a process died (rank 0 then waits in a collective)
                continue
            try:
                message = json.loads(self.conn.recv_bytes())
            except EOFError:  # rank 0 is gone without a word
                self._watch(ended=True)
            self._handle(*message)
        self._wait_others()
        return self.outcome

    def _handle(self, kind: str, body: Any = None) -> None:
        if kind == "ask":
            try:
                answer = self.reporter.should_stop()
            except BaseException:
                self._answer(["end"])  # this run may write no more: rank 0 ends, the others are killed
                raise
            self._answer(["ok", answer])
        elif kind in ("metric", "progress", "snapshot"):
            getattr(self.reporter, kind)(**body)
        elif kind == "log":
            self.reporter.log(body)
        elif kind == "device":
            self.reporter.using_device(body, processes=tuple(proc.pid for proc in self.procs))
        elif kind == "done":
            self.outcome = body
        elif kind == "failed":
            raise TrainingFailed(body)
        elif kind == "error":
            # Rank 0 fails when another rank dies under it: the death, not its echo, is the reason.
            time.sleep(1)
            self._watch(killed_only=True)
            raise RuntimeError(body)

    def _answer(self, message: list[Any]) -> None:
        try:
            self.conn.send_bytes(json.dumps(message).encode())
        except OSError:
            pass  # rank 0 is gone: _watch says why

    def _watch(self, ended: bool = False, killed_only: bool = False) -> None:
        """Raise RunLost once a process has died, naming first one that was killed (the others may
        have failed only because it went); `ended`: rank 0 closed its side without a word."""
        if ended:
            _wait(self.procs[0], 5)
        codes = [proc.poll() for proc in self.procs]
        dead = [rank for rank, code in enumerate(codes) if code is not None and code < 0]
        if not killed_only:
            dead += [rank for rank, code in enumerate(codes) if code is not None and code > 0]
            dead += [0] if ended else []
        if dead:
            rank = dead[0]
            raise RunLost(f"rank {rank} ({self.plan.devices[rank]}, pid {self.procs[rank].pid}) {_death(codes[rank])}")

    def _wait_others(self) -> None:
        deadline = time.monotonic() + _GRACE_SECONDS
        for proc in self.procs:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))


def _wait(proc: subprocess.Popen[bytes], seconds: float) -> int | None:
    try:
        return proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return None


def _death(code: int | None) -> str:
    if code is None:
        return "stopped answering"
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code} (its log: ranks/ in the job's folder)"


def plan_to_json(plan: TrainingPlan) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(plan).items()}


def plan_from_json(data: dict[str, Any]) -> TrainingPlan:
    paths = {"output_folder", "dataset_folder"}
    kinds = {f.name: f for f in fields(TrainingPlan)}
    values = {k: Path(v) if k in paths else tuple(v) if k in ("input_shape", "devices") else v
              for k, v in data.items() if k in kinds}
    return TrainingPlan(**values)


# --- one rank (its own process) ---------------------------------------------------------------

class _PipeReporter:
    """Rank 0's reporter: each call goes to the launcher; should_stop waits for its answer."""

    def __init__(self, fd: int) -> None:
        self.conn = Connection(fd)
        self._lock = threading.Lock()  # the snapshot thread asks too

    def _send(self, *message: Any) -> None:
        with self._lock:
            self.conn.send_bytes(json.dumps(message).encode())

    def metric(self, **kw: Any) -> None:
        self._send("metric", kw)

    def progress(self, **kw: Any) -> None:
        self._send("progress", kw)

    def snapshot(self, **kw: Any) -> None:
        self._send("snapshot", kw)

    def log(self, message: str) -> None:
        self._send("log", message)

    def using_device(self, name: str, processes: tuple[int, ...] = ()) -> None:
        self._send("device", name)

    def should_stop(self) -> bool:
        with self._lock:
            self.conn.send_bytes(b'["ask"]')
            answer = json.loads(self.conn.recv_bytes())  # EOFError when the launcher is gone: this rank ends
        if answer[0] == "end":
            raise _Ended
        return bool(answer[1])

    def send(self, *message: Any) -> None:
        self._send(*message)


class _Ended(Exception):
    """The launcher said this run may write no more."""


def rank_main(plan_path: str, rank: int, store: str, fd: str) -> int:
    import django

    django.setup()
    import torch
    import torch.distributed as dist
    from django.conf import settings

    from training.torch.loop import _Run
    from training.torch.ranks import Ranks

    plan = plan_from_json(json.loads(Path(plan_path).read_text()))
    device = torch.device(plan.devices[rank])
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if os.environ.get("WORKBENCH_RANK_THREADS"):
        torch.set_num_threads(int(os.environ["WORKBENCH_RANK_THREADS"]))
    # Rank 0 speaks for the run; the others' reports would repeat it.
    pipe = _PipeReporter(int(fd)) if rank == 0 else None
    reporter = pipe or SilentReporter()

    def tell(*message: Any) -> None:
        if pipe is not None:
            pipe.send(*message)

    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=f"file://{store}", rank=rank,
                            world_size=len(plan.devices), timeout=timedelta(seconds=settings.WORKBENCH_DDP_TIMEOUT))
    try:
        ranks = Ranks(rank, len(plan.devices), device)
        outcome = _Run(plan, reporter, device, ranks).train()
        ranks.barrier()  # rank 0 validates and snapshots last: the others wait for it before they go
        tell("done", outcome)
        return 0
    except _Ended:
        return 0
    except TrainingFailed as exc:  # every rank meets the same failure (a diverged loss is all-reduced)
        tell("failed", str(exc))
        return 0
    except Exception as exc:
        tell("error", f"rank 0 failed: {type(exc).__name__}: {exc}")
        raise
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    try:
        code = rank_main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4])
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # No interpreter teardown: the process group's native threads can abort it there (SIGABRT,
    # "terminate called without an active exception") after the run is over.
    os._exit(code)
