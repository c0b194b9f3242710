from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from datasets import selectors as dataset_selectors
from jobs import selectors, services
from jobs.columns import DEFAULT_COLUMNS
from jobs.forms import (
    MULTI_VALUE_FIELDS,
    DetectImageForm,
    JobForm,
    SnapshotImageForm,
    initial_from_job,
    network_initial,
    network_source_initial,
)
from jobs.inference import job_infer, page_photo, segmentation_overlay
from jobs.models import TrainingJob
from serving.client import ServingUnavailable
from training.vision_tasks import vision_task
from training.vision_tasks.detection import DEFAULT_SCORE_THRESHOLD
from workbench.pagination import page_context
from workbench.uploads import TOO_LARGE_FORM, upload_too_large


def job_list(request: HttpRequest) -> HttpResponse:
    filters = _job_list_filters(request)
    jobs = selectors.job_list_filtered(user=request.user, **filters)
    context = page_context(request, jobs)
    sort = request.GET.copy()
    for key in ("page", "ordering"):
        sort.pop(key, None)
    context |= filters | {
        "jobs": context["page"], "sort_query": sort.urlencode(), "statuses": TrainingJob.Status.values,
        "datasets": dataset_selectors.dataset_list(user=request.user).values("pk", "name"),
        "choices": selectors.job_filter_choices(user=request.user), "default_columns": DEFAULT_COLUMNS,
        "group_counts": selectors.job_group_counts(jobs=jobs) if filters["by_group"] else {}}
    return render(request, "jobs/list.html", context)


def _job_list_filters(request: HttpRequest) -> dict[str, Any]:
    """The page ignores a value it does not know (a stale link); the API answers it with a 400."""
    status, ordering, dataset, sweep = (request.GET.get(key, "") for key in ("status", "ordering", "dataset", "sweep"))
    return {"status": status if status in TrainingJob.Status.values else "",
            "ordering": ordering if ordering in selectors.JOB_ORDERING_CHOICES else "",
            "dataset": int(dataset) if dataset.isdigit() else None, "sweep": int(sweep) if sweep.isdigit() else None,
            "network": request.GET.get("network", "")[:100], "group": request.GET.get("group", "")[:100],
            "search": request.GET.get("search", "").strip()[:200], "by_group": request.GET.get("by_group") == "1"}


@require_POST
def job_bulk(request: HttpRequest) -> HttpResponse:
    """The jobs table's selection: compare them, or abort or delete each that can be (the rest named, with why)."""
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        back = reverse("job-list")
    ids = list(dict.fromkeys(int(v) for v in request.POST.getlist("jobs") if v.isdigit()))
    action = request.POST.get("action", "")
    if not ids or action not in ("compare", "abort", "delete"):
        messages.error(request, "Select at least one job, then Compare, Abort or Delete.")
        return redirect(back)
    if action == "compare":
        return redirect(f"{reverse('compare')}?jobs={','.join(str(pk) for pk in ids)}")
    found = selectors.job_list(user=request.user).in_bulk(ids)
    outcome = services.jobs_bulk(jobs=[found[pk] for pk in ids if pk in found], action=action)
    _bulk_messages(request, action, outcome, missing=[pk for pk in ids if pk not in found])
    return redirect(back)


def _bulk_messages(request: HttpRequest, action: str, outcome: services.BulkOutcome, missing: list[int]) -> None:
    done = {"abort": "Abort requested for", "delete": "Deleted"}[action]
    if outcome.done:
        names = ", ".join(f"'{job.name}'" for job in outcome.done)
        messages.success(request, f"{done} {len(outcome.done)} job{pluralize(len(outcome.done))}: {names}.")
    refused = [f"'{job.name}' ({reason})" for job, reason in outcome.refused]
    refused += [f"#{pk} (no such job)" for pk in missing]
    if refused:
        messages.error(request, f"Could not {action} {len(refused)} job{pluralize(len(refused))}: "
                                f"{'; '.join(refused)}")


def job_create(request: HttpRequest) -> HttpResponse:
    initial = _create_initial(request)
    data, grid = _several_values(request)
    form = JobForm(data, initial=initial, user=request.user)
    if request.method == "POST" and form.is_valid() and grid:
        from sweeps.views import sweep_from_job_form

        response = sweep_from_job_form(request, form, grid)
        if response is not None:
            return response
    elif request.method == "POST" and form.is_valid():
        try:
            job = services.job_create(owner=request.user, dataset=form.cleaned_data["dataset"],
                                      network=form.cleaned_data["network"], options=form.job_settings(),
                                      given=form.given())
        except services.JobInputError as exc:
            form.add_error(form.error_field(exc), str(exc))
        else:
            return redirect("job-detail", pk=job.pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "jobs/create.html", {"form": form}, status=status)


def _create_initial(request: HttpRequest) -> dict[str, Any]:
    """The job form's first values: a clone's settings; else the dataset asked for (?dataset=), the
    Fine-tune link's source and its network, or the dataset's task's default network, with the
    settings that network brings."""
    clone, dataset = request.GET.get("clone", ""), request.GET.get("dataset", "")
    if clone.isdigit():
        source = selectors.job_get(user=request.user, pk=int(clone))
        initial = initial_from_job(services.job_settings(job=source), source.dataset_id, source.network)
        return {**initial, **({"dataset": int(dataset)} if dataset.isdigit() else {})}
    initial: dict[str, Any] = {"dataset": int(dataset)} if dataset.isdigit() else {}
    initial.update(network_source_initial(request.GET))
    fine_tuned = selectors.job_list(user=request.user).filter(pk=initial.get("pretrained_job", 0)).first()
    chosen = dataset_selectors.dataset_list(user=request.user).filter(pk=initial.get("dataset", 0)).first()
    if fine_tuned is not None:  # the Fine-tune link: the same network, on a dataset the user picks
        initial["network"] = fine_tuned.network
    elif chosen is not None:
        initial["network"] = vision_task(chosen.task).default_network
    return {**network_initial(initial["network"]), **initial} if "network" in initial else initial


def _several_values(request: HttpRequest):  # type: ignore[no-untyped-def]
    """Fields given several comma-separated values make a grid sweep (the sweeps app)."""
    if request.method != "POST":
        return None, {}
    from sweeps.forms import several_values

    return several_values(request.POST, MULTI_VALUE_FIELDS)


def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = selectors.job_get(user=request.user, pk=pk)
    context = {"job": job, "status": selectors.job_status_dict(job=job),
               "log_tail": selectors.job_log_tail(job=job), "classify_form": SnapshotImageForm(job=job),
               "can": selectors.job_capabilities(job=job), "heartbeat_timeout": settings.HEARTBEAT_TIMEOUT,
               "task": selectors.job_task_page(job=job)}
    return render(request, "jobs/detail.html", context)


@require_POST
def job_abort(request: HttpRequest, pk: int) -> HttpResponse:
    return _lifecycle(request, pk, services.job_abort, "Abort requested: the job stops at its next step.")


@require_POST
def job_resume(request: HttpRequest, pk: int) -> HttpResponse:
    return _lifecycle(request, pk, services.job_resume, "Resumed from the last snapshot.")


def _lifecycle(request: HttpRequest, pk: int, action, done: str) -> HttpResponse:  # type: ignore[no-untyped-def]
    job = selectors.job_get(user=request.user, pk=pk)
    try:
        action(job=job)
    except services.JobStateError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, done)
    return redirect("job-detail", pk=pk)


@require_POST
def job_delete(request: HttpRequest, pk: int) -> HttpResponse:
    job = selectors.job_get(user=request.user, pk=pk)
    try:
        services.job_delete(job=job)
    except services.JobStateError as exc:
        messages.error(request, str(exc))
        return redirect("job-detail", pk=pk)
    messages.success(request, f"Deleted job '{job.name}'.")
    return redirect("job-list")


def job_classify_view(request: HttpRequest, pk: int) -> HttpResponse:
    job = selectors.job_get(user=request.user, pk=pk)
    detection = job.dataset.task == "detection"
    form_class = DetectImageForm if detection else SnapshotImageForm
    form = form_class(request.POST or None, request.FILES or None, job=job)
    result, unavailable = None, None
    # Detection's page is sent every box the detector kept: its slider hides the low ones.
    options = {"score_threshold": 0.0} if detection else {}
    if upload_too_large(request):
        form.errors["image"] = form.error_class([TOO_LARGE_FORM])  # not "required": it was cut off
    elif request.method == "POST" and form.is_valid():
        try:
            result = job_infer(job=job, image=form.cleaned_data["image"], epoch=form.cleaned_data["epoch"],
                               options=options)
        except (services.JobInputError, services.JobStateError) as exc:
            form.add_refusal(exc)
        except ServingUnavailable as exc:  # not the image's fault: said above the form, with its 503/504
            unavailable = exc
    status = unavailable.http_status if unavailable else 400 if request.method == "POST" and result is None else 200
    page = vision_task(job.dataset.task).pages["infer"]
    context = {"job": job, "form": form, "result": result, "unavailable": unavailable}
    if job.dataset.task == "segmentation":
        context |= _segment_context(job, result, form.cleaned_data.get("image") if result else None)
    if detection:
        context |= _detect_context(job, result, form)
    return render(request, page, context, status=status)


def box_colours(dataset: Any) -> list[list[int]]:
    """Each class's [r, g, b] for its boxes: the dataset's colormap, else the default palette from its
    second colour on (the first is black, segmentation's background: a detection class is never one)."""
    from datasets.ingest.segmentation import default_colour

    if dataset.colormap:
        return dataset.class_colours
    return [list(default_colour(i + 1)) for i in range(len(dataset.classes))]


def _detect_context(job: TrainingJob, result: dict[str, Any] | None, form: DetectImageForm) -> dict[str, Any]:
    """The classes' colours, and with an answer the upload to draw its boxes over and the slider's start."""
    colours = ["rgb({}, {}, {})".format(*rgb) for rgb in box_colours(job.dataset)]
    legend = [{"name": name, "rgb": colours[i]} for i, name in enumerate(job.dataset.classes)]
    if result is None:
        return {"legend": legend}
    threshold = form.cleaned_data.get("score_threshold")
    return {"legend": legend, "photo": page_photo(image=form.cleaned_data["image"]),
            "threshold": DEFAULT_SCORE_THRESHOLD if threshold is None else threshold,
            "drawing": {"width": result["width"], "height": result["height"],
                        "boxes": [{**found, "colour": colours[found["class_index"]]} for found in result["boxes"]]}}


def _segment_context(job: TrainingJob, result: dict[str, Any] | None, image: Any) -> dict[str, Any]:
    """The classes' colours for the legend and, with an answer, the upload and its mask in them."""
    colours = job.dataset.class_colours
    legend = [{"name": name, "rgb": "rgb({}, {}, {})".format(*colours[i]),
               "fraction": result["class_pixels"][name] if result else None}
              for i, name in enumerate(job.dataset.classes)]
    overlay = segmentation_overlay(answer=result, image=image, colours=colours) if result else {}
    return {"legend": legend, "overlay": overlay}


