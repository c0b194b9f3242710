from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings as django_settings
from django.contrib.auth.models import AbstractBaseUser

from datasets.models import Dataset
from datasets.selectors import dataset_list
from jobs import services
from jobs.augmentation_form import AugmentationForm, augmentation_error_field, augmentation_initial
from jobs.options import (
    DEFAULTS,
    GROUP_MAX_LENGTH,
    MAX_DEVICES,
    NAME_MAX_LENGTH,
    NETWORK_DEFAULT_FIELDS,
    NOTES_MAX_LENGTH,
    SETTINGS,
    network_default_table,
    network_defaults,
    setting_type,
)
from jobs.selectors import job_snapshot_epochs
from networks.selectors import network_list
from pretrained.models import PretrainedModel
from pretrained.selectors import pretrained_list
from training.backends import BackendEntry, backend_list
from training.vision_tasks.detection import DEFAULT_SCORE_THRESHOLD
from workers.selectors import device_choices

OPTIMIZER_LABELS = {"sgd": "SGD with momentum", "nesterov": "SGD, Nesterov momentum", "adam": "Adam",
                    "adamw": "AdamW", "rmsprop": "RMSprop"}
# Numeric fields that take several comma-separated values, as DIGITS did: "0.1, 0.01" makes a grid
# sweep of one job per combination (sweeps.forms.several_values); text inputs so a comma can be typed.
MULTI_VALUE_FIELDS = ("epochs", "batch_size", "learning_rate", "momentum", "weight_decay", "seed", "lr_gamma",
                      "lr_step_size")
NETWORK_SOURCES = [("", "Its initial weights"), ("job", "A previous job's snapshot"), ("model", "A pretrained model")]
SOURCE_FIELDS = ("pretrained_source", "pretrained_job", "pretrained_epoch", "pretrained_model")
AMP_LABELS = {"off": "Off (float32)", "bf16": "bf16 (GPU, or a CPU with bfloat16 instructions)", "fp16": "fp16 (GPU)"}
POLICY_LABELS = {"fixed": "Fixed", "step": "Step down every N epochs", "multistep": "Step down at milestones",
                 "exp": "Exponential decay", "cosine": "Cosine annealing"}


def backend_label(entry: BackendEntry) -> str:
    """"jax: JAX 0.10.2 (classification; no mixed precision, no compile, one device)", from its capability flags."""
    caps = entry.capabilities
    missing = [text for text, lacks in (("no mixed precision", caps["amp_modes"] == ["off"]),
                                        ("no compile", not caps["compile"]), ("one device", not caps["distributed"]),
                                        ("no augmentation", not caps["augmentation"])) if lacks]
    missing = [", ".join(missing)] if missing else []
    version = f" {entry.version}" if entry.version else " (not installed here)"
    return f"{entry.alias}: {entry.framework}{version} ({'; '.join([', '.join(entry.tasks), *missing])})"


def setting_field(name: str, *, labels: dict[str, str] | None = None, **extra: Any) -> forms.Field:
    """The form field of job setting `name`: its type, default, bounds or choices, label and help
    from jobs.options (the service's own table), `extra` for what only the page needs."""
    setting = SETTINGS[name]
    kwargs: dict[str, Any] = {"initial": getattr(DEFAULTS, name), "help_text": setting.help}
    if setting.label:
        kwargs["label"] = setting.label
    if setting.choices:
        # Left blank where not required: None, so the default applies (JobForm.job_settings).
        return forms.TypedChoiceField(choices=[(c, (labels or {}).get(c, c)) for c in setting.choices],
                                      empty_value=None, **{**kwargs, **extra})
    bounds = {"min_value": setting.low, "max_value": setting.high}
    kwargs.update({key: value for key, value in bounds.items() if value is not None})
    if setting.message:
        kwargs["error_messages"] = {"min_value": setting.message, "max_value": setting.message}
    number = forms.IntegerField if setting_type(name) == "int" else forms.FloatField
    return number(**{**kwargs, **extra})


class JobForm(AugmentationForm):
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.none(), empty_label=None)
    network = forms.ChoiceField()
    name = forms.CharField(max_length=NAME_MAX_LENGTH, required=False, help_text="Blank: '<network> on <dataset>'.")
    epochs = setting_field("epochs")
    batch_size = setting_field("batch_size")
    optimizer = setting_field("optimizer", labels=OPTIMIZER_LABELS)
    learning_rate = setting_field("learning_rate")
    momentum = setting_field("momentum")
    weight_decay = setting_field("weight_decay")
    lr_policy = setting_field("lr_policy", labels=POLICY_LABELS)
    lr_step_size = setting_field("lr_step_size")
    lr_gamma = setting_field("lr_gamma")
    lr_milestones = forms.CharField(required=False, label="Milestones (epochs)", help_text="e.g. 5, 8")
    # Optional (blank: the default), so a form posted without them still trains as before.
    accumulate = setting_field("accumulate", required=False)
    grad_clip = setting_field("grad_clip", required=False)
    label_smoothing = setting_field("label_smoothing", required=False)
    seed = setting_field("seed")
    # Choices: what live workers report (workers.selectors.device_choices); the API takes any device.
    device = forms.ChoiceField(initial=DEFAULTS.device, help_text="GPUs checked below, or more than one counted, are used instead.")
    gpu_count = forms.IntegerField(min_value=1, max_value=MAX_DEVICES, initial=1, required=False,
                                   label="GPUs for this job",
                                   help_text="The next free N (with cpu: N processes). 1: the device alone.")
    devices = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple, label="Or these GPUs")
    compile = forms.BooleanField(required=False, initial=DEFAULTS.compile, label="Compile the network (torch.compile)",
                                 help_text="Training goes on without it, with a log line, if compilation fails.")
    # Not required: a form posted without it (a script, an older page) trains in float32.
    amp = setting_field("amp", labels=AMP_LABELS, required=False, help_text="")
    # Blank: settings.DEFAULT_TRAINING_BACKEND. Each choice says what its backend leaves out; the
    # service refuses a setting the chosen backend cannot honour, beside that setting's field.
    backend = forms.ChoiceField(required=False, label="Backend")
    val_interval = setting_field("val_interval")
    snapshot_interval = setting_field("snapshot_interval")
    group = forms.CharField(max_length=GROUP_MAX_LENGTH, required=False,
                            help_text="Jobs of one group are listed and compared together.")
    notes = forms.CharField(max_length=NOTES_MAX_LENGTH, required=False, strip=False,
                            widget=forms.Textarea(attrs={"rows": 2}))
    # Start from (templates/jobs/_network_source.html): the service checks the source and its fit.
    pretrained_source = forms.ChoiceField(choices=NETWORK_SOURCES, initial="", required=False, label="Weights",
                                          widget=forms.RadioSelect)
    pretrained_job = forms.IntegerField(required=False, min_value=1, label="Previous job (id)")
    pretrained_epoch = forms.FloatField(required=False, label="Epoch", help_text="Blank: its latest snapshot.")
    pretrained_model = forms.ModelChoiceField(queryset=PretrainedModel.objects.none(), required=False,
                                              label="Pretrained model")
    freeze_epochs = setting_field("freeze_epochs", required=False, help_text="0: never; -1: the whole run.")
    pretrained_lr_mult = setting_field("pretrained_lr_mult", required=False)

    def __init__(self, *args: Any, user: AbstractBaseUser, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["dataset"].queryset = dataset_list(user=user).filter(status=Dataset.Status.READY)
        networks = network_list(user=user)
        self.fields["network"].choices = [
            ("Built-in", [(e.name, e.title) for e in networks if e.builtin]),
            ("Custom", [(e.name, e.name) for e in networks if not e.builtin]),
        ]
        self.fields["pretrained_model"].queryset = pretrained_list(user=user)
        self.fields["backend"].choices = [(entry.alias, backend_label(entry)) for entry in backend_list()]
        self.fields["backend"].initial = django_settings.DEFAULT_TRAINING_BACKEND
        # Blank (or not posted): the network's own default; the page fills them in as the network changes.
        self.network_defaults = network_default_table([e.name for e in networks if e.builtin])
        for name in NETWORK_DEFAULT_FIELDS:
            self.fields[name].required = False
        self.device_choices = device_choices(user=user, keep=self._devices_set())
        self.fields["device"].choices = self.device_choices.device
        self.fields["devices"].choices = self.device_choices.gpus
        for name in MULTI_VALUE_FIELDS:
            self.fields[name].widget.input_type = "text"
            self.fields[name].widget.attrs.update(inputmode="decimal", title="Several values, e.g. 0.1, 0.01: a sweep")

    def _devices_set(self) -> list[str]:
        """The devices this form already names (posted, or a clone's): offered even if no worker reports them."""
        if self.is_bound:
            getlist = getattr(self.data, "getlist", lambda key: self.data.get(key) or [])
            return [self.data.get("device") or "", *getlist("devices")]
        return [self.initial.get("device") or "", *(self.initial.get("devices") or [])]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        checked, count = cleaned.get("devices") or [], cleaned.pop("gpu_count", None) or 1
        if checked and count > 1:
            self.add_error("devices", "Check GPUs or give a number of GPUs for this job, not both.")
        # One entry per process (JobSettings.devices): the checked GPUs, else N of the next free ones.
        kind = "cpu" if cleaned.get("device") == "cpu" else "cuda"
        cleaned["devices"] = list(checked) or ([kind] * count if count > 1 else [])
        return cleaned

    def clean_lr_milestones(self) -> list[float]:
        raw = self.cleaned_data.get("lr_milestones") or ""
        try:
            return sorted(float(part) for part in raw.replace(";", ",").split(",") if part.strip())
        except ValueError:
            raise forms.ValidationError("Give epochs as numbers separated by commas, e.g. 5, 8.") from None

    def error_field(self, exc: services.JobInputError) -> str | None:
        """The field a service error belongs beside (an augmentation error: the field of the key it names)."""
        field = augmentation_error_field(str(exc)) if exc.field == "augmentation" else exc.field
        return field if field in self.fields else None

    def job_settings(self) -> services.JobSettings:
        data = {k: v for k, v in self.cleaned_data.items()
                if k not in ("dataset", "network", *SOURCE_FIELDS) and v is not None}
        # Left blank (or not on the page): the defaults, e.g. no freezing and the full learning rate.
        return services.JobSettings(**data, pretrained=self.network_source())

    def given(self) -> set[str]:
        """The settings filled in: the blank ones take the network's defaults (services.job_create)."""
        return {name for name in services.JobSettings.__dataclass_fields__
                if self.cleaned_data.get(name) not in (None, "")}

    def network_source(self) -> dict[str, Any]:
        """The API's `pretrained` from the "Start from" fields: {"job", "epoch"}, {"model"} or {}."""
        data = self.cleaned_data
        if data.get("pretrained_source") == "job":
            epoch = data.get("pretrained_epoch")
            return {"job": data.get("pretrained_job") or 0, **({"epoch": epoch} if epoch is not None else {})}
        if data.get("pretrained_source") == "model":
            model = data.get("pretrained_model")
            return {"model": model.pk if model is not None else 0}
        return {}


class SnapshotImageForm(forms.Form):
    """One image and the snapshot to run it through (the latest, or an epoch the job has): the
    classify page's form and the inspect page's."""

    image = forms.FileField()
    epoch = forms.TypedChoiceField(coerce=float, required=False, empty_value=None, label="Snapshot")

    def __init__(self, *args: Any, job: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        epochs = job_snapshot_epochs(job=job)
        self.fields["epoch"].choices = [("", "Latest")] + [(f"{e:g}", f"Epoch {e:g}") for e in reversed(epochs)]

    def add_refusal(self, exc: Exception) -> None:
        """A service's refusal beside the snapshot picker when it is about the epoch, else the image."""
        self.add_error("epoch" if getattr(exc, "field", None) == "epoch" else "image", str(exc))


class DetectImageForm(SnapshotImageForm):
    """The detect page's form: the snapshot image form and the score the page's slider starts at
    (the page is sent every box; the slider hides those below it without asking again)."""

    score_threshold = forms.FloatField(min_value=0.0, max_value=1.0, required=False, initial=DEFAULT_SCORE_THRESHOLD,
                                       label="Score threshold",
                                       help_text="Boxes scoring below it are hidden; the slider moves it.")


def network_source_initial(query: Any) -> dict[str, Any]:
    """?pretrained_job=<id>&pretrained_epoch=<e> (a job page's Fine-tune link) as the form's initial."""
    job, epoch = query.get("pretrained_job", ""), query.get("pretrained_epoch", "")
    if not job.isdigit():
        return {}
    return {"pretrained_source": "job", "pretrained_job": int(job),
            **({"pretrained_epoch": float(epoch)} if epoch.replace(".", "", 1).isdigit() else {})}


def network_initial(network: str) -> dict[str, Any]:
    """The form's initial for a network chosen up front: it, and the settings it brings."""
    return {"network": network, **network_defaults(network)}


def initial_from_job(settings_: services.JobSettings, dataset_id: int, network: str) -> dict[str, Any]:
    initial: dict[str, Any] = {k: getattr(settings_, k) for k in services.JobSettings.__dataclass_fields__}
    initial.update(dataset=dataset_id, network=network, name=f"{settings_.name} (clone)",
                   lr_milestones=", ".join(f"{m:g}" for m in settings_.lr_milestones))
    initial.update(augmentation_initial(settings_.augmentation))
    initial.update(devices_initial(settings_.devices))
    return initial


def devices_initial(devices: list[str]) -> dict[str, Any]:
    """A job's `devices` as the form's controls: named GPUs checked, else a count of the next free ones."""
    if devices and all(d.startswith("cuda:") for d in devices):
        return {"devices": devices, "gpu_count": 1}
    cpu = bool(devices) and all(d == "cpu" for d in devices)  # N CPU processes: the count beside device cpu
    return {"devices": [], "gpu_count": max(len(devices), 1), **({"device": "cpu"} if cpu else {})}


