from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from jobs.errors import JobInputError, JobStateError
from jobs.options import with_network_defaults
from sweeps import selectors, services
from sweeps.forms import SweepForm, TrainBestForm, form_field
from workbench.pagination import page_context


def sweep_list(request: HttpRequest) -> HttpResponse:
    context = page_context(request, selectors.sweep_list(user=request.user))
    return render(request, "sweeps/list.html", context | {"sweeps": context["page"]})


def sweep_create(request: HttpRequest) -> HttpResponse:
    initial: dict[str, Any] = {}
    dataset = request.GET.get("dataset", "")
    if dataset.isdigit():
        initial["dataset"] = int(dataset)
    form = SweepForm(request.POST or None, initial=initial, user=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            sweep = services.sweep_create(owner=request.user, dataset=form.cleaned_data["dataset"], spec=form.spec())
        except JobInputError as exc:
            field = form_field(exc.field)
            form.add_error(field if field in form.fields else None, str(exc))
        else:
            return redirect("sweep-detail", pk=sweep.pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "sweeps/create.html", {"form": form}, status=status)


def sweep_from_job_form(request: HttpRequest, form: forms.Form, grid: dict[str, list[Any]]) -> HttpResponse | None:
    """The job form with several values in a field: a grid sweep over them (None: refused, the
    refusal added to the form)."""
    # Fields left blank take the network's own defaults, as a single job's do.
    settings_ = with_network_defaults(form.job_settings(), form.cleaned_data["network"], form.given())  # type: ignore[attr-defined]
    options = asdict(settings_)
    name = options.pop("name") or ""
    spec = services.SweepSpec(name=name, network=form.cleaned_data["network"],
                              base={k: v for k, v in options.items() if k not in grid}, grid=grid, max_concurrent=2)
    try:
        sweep = services.sweep_create(owner=request.user, dataset=form.cleaned_data["dataset"], spec=spec)
    except JobInputError as exc:
        field = (exc.field or "").split(".")[-1]
        form.add_error(field if field in form.fields else None, str(exc))
        return None
    messages.success(request, f"{sweep.trials_total} jobs, one per combination of the values you gave.")
    return redirect("sweep-detail", pk=sweep.pk)


def sweep_detail(request: HttpRequest, pk: int) -> HttpResponse:
    sweep = selectors.sweep_get(user=request.user, pk=pk)
    context = {"sweep": sweep, "data": selectors.sweep_dict(sweep=sweep),
               "full_epochs": max(int(sweep.base.get("epochs", 10)) * 2, 10)}
    return render(request, "sweeps/detail.html", context)


@require_POST
def sweep_abort(request: HttpRequest, pk: int) -> HttpResponse:
    sweep = selectors.sweep_get(user=request.user, pk=pk)
    try:
        services.sweep_abort(sweep=sweep)
    except JobStateError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Sweep aborted: no new trials; its running trials stop at their next step.")
    return redirect("sweep-detail", pk=pk)


@require_POST
def sweep_train_best(request: HttpRequest, pk: int) -> HttpResponse:
    sweep = selectors.sweep_get(user=request.user, pk=pk)
    form = TrainBestForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Epochs: {form.errors['epochs'][0]}")
        return redirect("sweep-detail", pk=pk)
    try:
        job = services.sweep_train_best(sweep=sweep, owner=request.user, epochs=form.cleaned_data["epochs"])
    except (JobInputError, JobStateError) as exc:
        messages.error(request, str(exc))
        return redirect("sweep-detail", pk=pk)
    return redirect("job-detail", pk=job.pk)
