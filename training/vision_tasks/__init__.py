"""Vision tasks: the kind of problem a dataset poses and a job solves (classification, segmentation and
detection). Called "vision tasks" so they are never taken for Celery tasks.

A vision task is a small bundle, as torchvision's references and Ultralytics' `task=` split it:
what a dataset of it stores, the head a network needs for it, its live metrics, what inference
answers and what evaluation reports, and which pages show them. This package holds the parts
that need no framework; each backend brings the rest (the loss, running the network, the metrics
on its tensors: `training.torch.vision_tasks`). The job lifecycle, live curves, sweeps, compare,
leases and recovery know neither: they see a task's name.
"""
from __future__ import annotations

from training.vision_tasks.base import Metric, VisionTask
from training.vision_tasks.classification import Classification
from training.vision_tasks.detection import Detection
from training.vision_tasks.segmentation import Segmentation

__all__ = ["DEFAULT_TASK", "TASK_NAMES", "VISION_TASKS", "Metric", "VisionTask", "vision_task"]

DEFAULT_TASK = "classification"
VISION_TASKS: dict[str, VisionTask] = {task.name: task for task in (Classification(), Segmentation(), Detection())}
TASK_NAMES: tuple[str, ...] = tuple(VISION_TASKS)


def vision_task(name: str) -> VisionTask:
    """The task called `name`; KeyError names the known ones."""
    try:
        return VISION_TASKS[name]
    except KeyError:
        raise KeyError(f"Unknown task '{name}'; known: {', '.join(VISION_TASKS)}.") from None
