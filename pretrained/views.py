from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from jobs import selectors as job_selectors
from jobs.errors import JobInputError, JobStateError
from pretrained import selectors, services
from pretrained.forms import FromJobForm, UploadForm
from workbench.pagination import page_context


def pretrained_list(request: HttpRequest) -> HttpResponse:
    form = UploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        weights = data.pop("weights")
        try:
            model = services.pretrained_upload(owner=request.user, upload=services.Upload(**data), weights=weights,
                                               size=weights.size)
        except JobInputError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            messages.success(request, f"Uploaded '{model.name}': {len(model.tensors)} tensors.")
            return redirect("pretrained-list")
    context = page_context(request, selectors.pretrained_list(user=request.user))
    return render(request, "pretrained/list.html", {**context, "models": context["page"], "form": form})


@require_POST
def pretrained_from_job(request: HttpRequest, pk: int) -> HttpResponse:
    job = job_selectors.job_get(user=request.user, pk=pk)
    form = FromJobForm(request.POST)
    if form.is_valid():
        try:
            model = services.pretrained_from_job(owner=request.user, job=job, **form.cleaned_data)
        except (JobInputError, JobStateError) as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Made the pretrained model '{model.name}'.")
            return redirect("pretrained-list")
    return redirect(reverse("job-detail", args=[job.pk]))


@require_POST
def pretrained_delete(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        services.pretrained_delete(model=selectors.pretrained_get(user=request.user, pk=pk))
    except JobStateError as exc:
        messages.error(request, str(exc))
    return redirect("pretrained-list")
