"""The sweep form, and the job form's comma-separated values read as a grid (as DIGITS did)."""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.models import AbstractBaseUser
from django.http import QueryDict

from datasets.models import Dataset
from datasets.selectors import dataset_list
from jobs.forms import OPTIMIZER_LABELS, setting_field
from networks.selectors import network_list
from sweeps.spec import SweepSpec
from training.vision_tasks import VISION_TASKS

PARAMETERS_HELP = ("One field a line. Grid: 'learning_rate: 0.1, 0.01'. Random or TPE: a range "
                   "'learning_rate: 0.0001 .. 0.5 log' or choices 'optimizer: sgd, adam'.")


def parse_value(text: str) -> Any:
    """'8' → 8, '0.1' → 0.1, 'adam' → 'adam'."""
    text = text.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class SweepForm(forms.Form):
    name = forms.CharField(max_length=150, required=False, help_text="Blank: 'Sweep of <network> on <dataset>'.")
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.none(), empty_label=None)
    network = forms.ChoiceField()
    # The job's own fields (jobs.options): a sweep's base is bounded as a job is.
    epochs = setting_field("epochs", initial=5, help_text="")
    batch_size = setting_field("batch_size", help_text="")
    optimizer = setting_field("optimizer", labels=OPTIMIZER_LABELS)
    learning_rate = setting_field("learning_rate")
    method = forms.ChoiceField(choices=[("grid", "Grid: every combination"), ("random", "Random search"),
                                        ("tpe", "TPE (Bayesian) search")], initial="random")
    parameters = forms.CharField(widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "class": "code"}),
                                 help_text=PARAMETERS_HELP, initial="learning_rate: 0.0001 .. 0.5 log")
    trials = forms.IntegerField(min_value=1, initial=8, help_text="Random and TPE only.")
    seed = forms.IntegerField(min_value=0, required=False, initial=0, help_text="Random and TPE only.")
    max_concurrent = forms.IntegerField(min_value=1, max_value=100, initial=2, label="At most at once")
    early_stopping = forms.BooleanField(required=False, initial=True, label="Stop hopeless trials early (ASHA)")
    # Every task's metrics: the service keeps those of the dataset's task (sweeps.spec.sweep_metrics).
    metric = forms.ChoiceField(choices=[
        *dict.fromkeys((f"val_{m.name}", f"Validation {m.label[0].lower()}{m.label[1:]} "
                        f"({'higher' if m.mode == 'max' else 'lower'} is better)")
                       for task in VISION_TASKS.values() for m in task.metrics),
        ("val_loss", "Validation loss (lower is better)")])
    grace_epochs = forms.IntegerField(min_value=1, initial=1, label="Grace epochs")
    reduction_factor = forms.IntegerField(min_value=2, initial=3, label="Reduction factor")

    def __init__(self, *args: Any, user: AbstractBaseUser, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["dataset"].queryset = dataset_list(user=user).filter(status=Dataset.Status.READY)
        self.fields["network"].choices = [(e.name, e.title if e.builtin else e.name) for e in network_list(user=user)]

    def clean_parameters(self) -> dict[str, list[str]]:
        parsed: dict[str, list[str]] = {}
        for line in self.cleaned_data["parameters"].splitlines():
            if not line.strip():
                continue
            name, sep, values = line.partition(":")
            if not sep or not values.strip():
                raise forms.ValidationError(f"Write '{line.strip()}' as 'field: values'.")
            parsed[name.strip()] = [values.strip()]
        if not parsed:
            raise forms.ValidationError("Give at least one field to vary.")
        return parsed

    def spec(self) -> SweepSpec:
        data = self.cleaned_data
        base = {"epochs": data["epochs"], "batch_size": data["batch_size"], "optimizer": data["optimizer"],
                "learning_rate": data["learning_rate"]}
        lines = {name: values[0] for name, values in data["parameters"].items()}
        grid = search = None
        if data["method"] == "grid":
            grid = {name: [parse_value(v) for v in text.split(",") if v.strip()] for name, text in lines.items()}
        else:
            search = {"method": data["method"], "trials": data["trials"], "seed": data["seed"],
                      "space": {name: _rule(text) for name, text in lines.items()}}
        early = None
        if data["early_stopping"]:
            early = {"method": "asha", "metric": data["metric"], "grace_epochs": data["grace_epochs"],
                     "reduction_factor": data["reduction_factor"]}
        return SweepSpec(name=data["name"], network=data["network"], base=base, grid=grid, search=search,
                         max_concurrent=data["max_concurrent"], early_stopping=early)


class TrainBestForm(forms.Form):
    """The sweep page's "train the best again" box: the epochs, bounded as a job's are."""

    epochs = setting_field("epochs", initial=None)


def _rule(text: str) -> dict[str, Any]:
    """'0.001 .. 0.1 log' → a range; 'sgd, adam' → choices."""
    log = text.endswith(" log")
    body = text.removesuffix(" log").strip() if log else text
    if ".." in body:
        low, _, high = body.partition("..")
        return {"low": parse_value(low), "high": parse_value(high), "log": log}
    return {"choices": [parse_value(v) for v in body.split(",") if v.strip()]}


def form_field(service_field: str | None) -> str | None:
    """The form field a service refusal belongs to: grid.* and search.space.* are the parameters."""
    if not service_field:
        return None
    if service_field.startswith(("grid", "search.space", "base.")):
        return "parameters"
    return {"search.trials": "trials", "search.seed": "seed", "search.method": "method"}.get(
        service_field, service_field.removeprefix("early_stopping."))


# --- the job form's several values --------------------------------------------------------------

def several_values(data: QueryDict, names: tuple[str, ...]) -> tuple[QueryDict, dict[str, list[Any]]]:
    """The job form's data with each comma-separated field cut to its first value (so the form checks
    the rest as usual), and those fields' values as a grid; an empty grid when none has several."""
    single, grid = data.copy(), {}
    for name in names:
        values = [v.strip() for v in data.get(name, "").replace(";", ",").split(",") if v.strip()]
        if len(values) > 1:
            grid[name] = [parse_value(v) for v in values]
            single[name] = values[0]
    return single, grid
