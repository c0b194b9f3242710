"""Writes for pretrained models, and the check that turns a job's `pretrained` into what it copies.

Nothing here imports torch or unpickles anything: weights are read as a safetensors header (JSON)
and copied as bytes; the worker loads them with safetensors when the job starts.
"""
from __future__ import annotations

import json
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from datasets.models import Dataset
from jobs.errors import JobInputError, JobStateError
from jobs.models import TrainingJob
from jobs.selectors import job_list, job_snapshot
from networks.builtin import BUILTIN_NETWORKS, builtin_spec
from networks.spec import SpecError, parse_spec_text, plan_network
from pretrained import tensors
from pretrained.models import PretrainedModel
from pretrained.selectors import data_relative, pretrained_in_use, pretrained_list
from pretrained.tensors import TensorIndex, WeightsRejected
from training.vision_tasks import vision_task
from workbench.storage import model_files, store


class IncompatibleWeights(JobInputError):
    """Weights that do not fit the network: the message, and the layer-by-layer report."""

    def __init__(self, message: str, field: str, report: dict[str, Any]) -> None:
        super().__init__(message, field)
        self.report = report


# --- where a job starts from --------------------------------------------------------------------

@dataclass(frozen=True)
class Source:
    """Resolved weights: the file, its tensor index, and what the job stores about them."""

    path: Path
    index: TensorIndex
    stored: dict[str, Any]  # {"job", "epoch"} or {"model"}, with "weights" and "label"


def source_resolve(*, user: AbstractBaseUser, given: object) -> Source:
    """`{"job": id, "epoch": e}` (epoch optional: latest) or `{"model": id}`, of the user's own."""
    if not isinstance(given, dict) or ("job" in given) == ("model" in given):
        raise JobInputError('Give {"job": id, "epoch": e} (epoch optional) or {"model": id}.', "pretrained")
    if "model" in given:
        return _model_source(user, given["model"])
    return _job_source(user, given["job"], given.get("epoch"))


def _model_source(user: AbstractBaseUser, pk: object) -> Source:
    model = pretrained_list(user=user).filter(pk=_id(pk)).first()
    if model is None:
        raise JobInputError(f"No such pretrained model: {pk}.", "pretrained")
    stored = {"model": model.pk, "weights": data_relative(model.weights_path), "label": f"pretrained model {model.name}"}
    return Source(model.weights_path, model.tensors, stored)


def _job_source(user: AbstractBaseUser, pk: object, epoch: object) -> Source:
    job = job_list(user=user).filter(pk=_id(pk)).first()
    if job is None:
        raise JobInputError(f"No such job: {pk}.", "pretrained")
    snapshot = _snapshot(job, epoch)
    path = model_files(job.folder / snapshot.path)
    stored = {"job": job.pk, "epoch": snapshot.epoch, "weights": data_relative(path),
              "label": f"job {job.pk} epoch {snapshot.epoch:g}"}
    return Source(path, tensors.index_of_file(path), stored)


def _snapshot(job: TrainingJob, epoch: object) -> Any:
    if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, (int, float))):
        raise JobInputError("The epoch is a number (or leave it out for the latest).", "pretrained")
    try:
        return job_snapshot(job=job, epoch=epoch)  # type: ignore[arg-type]
    except (JobInputError, JobStateError) as exc:
        raise JobInputError(f"Job {job.pk}: {exc}", "pretrained") from None


def _id(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise JobInputError(f"{value!r} is not an id.", "pretrained")


def compatibility_report(*, spec: dict[str, Any], dataset: Dataset, source: Source) -> dict[str, Any]:
    # The head as the job will build it: one output per class, or the task's own (a detector's classes + 4).
    outputs = vision_task(dataset.task).outputs(dataset.classes)
    target = tensors.network_tensors(spec, tuple(dataset.image_shape), outputs)  # type: ignore[arg-type]
    report = tensors.compatibility(target, source.index)
    return {**report, "source": source.stored["label"]}


def job_pretrained_check(*, owner: AbstractBaseUser, given: object, spec: dict[str, Any],
                         dataset: Dataset) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a new job stores: the resolved source (with the names to copy) and the report.
    A source that would copy nothing is refused with the report."""
    source = source_resolve(user=owner, given=given)
    report = compatibility_report(spec=spec, dataset=dataset, source=source)
    copy = [row["name"] for row in report["rows"] if row["action"] == "copied"]
    # A batch norm's step counter alone (a scalar every such layer has) is no weight to start from.
    if all(name.endswith(".num_batches_tracked") for name in copy):
        raise IncompatibleWeights(f"Nothing in {source.stored['label']} fits this network: {report['summary']}",
                                  "pretrained", report)
    return {**source.stored, "copy": copy}, report


# --- pretrained models ------------------------------------------------------------------------

@dataclass(frozen=True)
class Upload:
    name: str
    network: str  # a built-in name or a spec as JSON text
    classes: object
    input_shape: object
    preprocessing: object = None


def pretrained_upload(*, owner: AbstractBaseUser, upload: Upload, weights: IO[bytes], size: int) -> PretrainedModel:
    """Check the weights (header only), the network, classes and input shape; store the weights,
    renamed from torchvision's names when they are a torchvision ResNet-18 or AlexNet."""
    classes, shape = _classes(upload.classes), _input_shape(upload.input_shape)
    builtin, spec = _network(upload.network, shape, len(classes))
    header, index = _header(weights, size)
    rename = fitting_rename(tensors.torchvision_rename(builtin, index), spec, shape, len(classes), index)
    index = {rename.get(name, name): shape_ for name, shape_ in index.items()}
    _refuse_conflicts(spec, shape, len(classes), index)
    with transaction.atomic():
        model = PretrainedModel.objects.create(
            owner=owner, name=_name(upload.name), network=builtin, network_spec=spec, classes=classes,
            input_shape=list(shape), preprocessing=_preprocessing(upload.preprocessing), tensors=index)
        _write_renamed(model.weights_path, header, rename, weights)
        store().publish(model.weights_path)  # in the store before the row is: any host's job may start from it
    return model


def _name(name: str) -> str:
    if not name.strip():
        raise JobInputError("Give the model a name.", "name")
    return name.strip()[:200]


def _classes(value: object) -> list[str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not value or not all(isinstance(c, str) and c for c in value):
        raise JobInputError('The classes are a list of names, e.g. ["cat", "dog"] or cat,dog.', "classes")
    return value


def _input_shape(value: object) -> tuple[int, int, int]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = None
    ok = (isinstance(value, list) and len(value) == 3 and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
          and value[0] in (1, 3) and 1 <= value[1] <= 4096 and 1 <= value[2] <= 4096)
    if not ok:
        raise JobInputError("The input shape is [C, H, W] with C 1 or 3, e.g. [3, 224, 224].", "input_shape")
    return value[0], value[1], value[2]  # type: ignore[index]


def _network(network: str, shape: tuple[int, int, int], classes: int) -> tuple[str, dict[str, Any]]:
    try:
        if network in BUILTIN_NETWORKS:
            spec = builtin_spec(network, shape, classes)
            name = network
        else:
            spec, name = parse_spec_text(network), ""
        plan_network(spec, shape, classes)
    except SpecError as exc:
        raise JobInputError(f"The network does not fit: {exc}", "network") from None
    return name, spec


def _preprocessing(value: object) -> dict[str, Any]:
    if value in (None, ""):
        return {"mean": "none"}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = None
    if not isinstance(value, dict) or value.get("mean", "none") not in ("image", "pixel", "none"):
        raise JobInputError('Preprocessing is a JSON object, e.g. {"mean": "none", "resize_mode": "squash"}.',
                            "preprocessing")
    return {"mean": "none", **value}


def _header(weights: IO[bytes], size: int) -> tuple[dict[str, Any], TensorIndex]:
    """The raw header and its tensor index; the file is left at the start of the tensor bytes."""
    weights.seek(0)
    try:
        index = tensors.read_index(weights, size)
    except WeightsRejected as exc:
        raise JobInputError(str(exc), "weights") from None
    weights.seek(0)
    (length,) = struct.unpack("<Q", weights.read(8))
    return json.loads(weights.read(length)), index


def fitting_rename(rename: dict[str, str], spec: dict[str, Any], shape: tuple[int, int, int], classes: int,
                    index: TensorIndex) -> dict[str, str]:
    """Only the torchvision names whose tensors fit the built-in's: the rest keep their own names
    (and show as unused), so the built-in's layers of another width are left new rather than clash."""
    target = tensors.network_tensors(spec, shape, classes)
    clashing = {old.rpartition(".")[0] for old, new in rename.items()
                if new in target and target[new]["shape"] != index[old]}
    # A layer moves whole or not at all: never the bias of a classifier whose weight does not fit.
    return {old: new for old, new in rename.items()
            if new in target and old.rpartition(".")[0] not in clashing}


def _refuse_conflicts(spec: dict[str, Any], shape: tuple[int, int, int], classes: int, index: TensorIndex) -> None:
    report = tensors.compatibility(tensors.network_tensors(spec, shape, classes), index)
    clashes = [row["name"] for row in report["rows"] if row["action"] == "remade"]
    if clashes or not report["counts"]["copied"]:
        why = f"{len(clashes)} tensors have another shape than the network's ({', '.join(clashes[:3])}" + \
              ("...)" if len(clashes) > 3 else ")") if clashes else "no tensor fits the network"
        raise IncompatibleWeights(f"The weights do not fit the network for this input shape and classes: {why}.",
                                  "weights", report)


def _write_renamed(path: Path, header: dict[str, Any], rename: dict[str, str], weights: IO[bytes]) -> None:
    """The same bytes under the new names: only the JSON header is rewritten (offsets unchanged)."""
    renamed = {rename.get(name, name): entry for name, entry in header.items()}
    encoded = json.dumps(renamed, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        out.write(struct.pack("<Q", len(encoded)))
        out.write(encoded)
        shutil.copyfileobj(weights, out)


def pretrained_from_job(*, owner: AbstractBaseUser, job: TrainingJob, name: str,
                        epoch: float | None = None) -> PretrainedModel:
    """A pretrained model from a job's snapshot: its weights, spec, classes, shape and mean."""
    snapshot = _snapshot(job, epoch)
    source = model_files(job.folder / snapshot.path)
    dataset = job.dataset
    preprocessing = {"mean": (job.augmentation or {}).get("mean", "image"), "resize_mode": dataset.resize_mode,
                     "mean_file": "mean.safetensors"}
    with transaction.atomic():
        model = PretrainedModel.objects.create(
            owner=owner, name=_name(name or f"{job.name} epoch {snapshot.epoch:g}"), network=job.network
            if job.network in BUILTIN_NETWORKS else "", network_spec=job.network_spec, classes=list(dataset.classes),
            input_shape=list(dataset.image_shape), preprocessing=preprocessing,
            tensors=tensors.index_of_file(source), source=PretrainedModel.Source.JOB, source_job=job,
            source_epoch=snapshot.epoch)
        model.folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, model.weights_path)
        if (job.folder / "mean.safetensors").exists():
            shutil.copyfile(job.folder / "mean.safetensors", model.folder / "mean.safetensors")
        store().publish_folder(model.folder)
    return model


def pretrained_delete(*, model: PretrainedModel) -> None:
    if pretrained_in_use(model=model):
        raise JobStateError("A queued or running job starts from this model; wait for it or abort it first.")
    folder = model.folder
    with transaction.atomic():
        model.delete()
        transaction.on_commit(lambda: store().delete_folder(folder))
