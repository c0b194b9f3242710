"""Pages for inspecting a snapshot on one image and for compressing it."""
from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from jobs import selectors as job_selectors
from jobs.errors import JobInputError, JobStateError
from jobs.forms import SnapshotImageForm
from results.compress import METHOD_TITLES, compression_classify, compression_package, compression_start
from results.compress_api import compression_response
from results.inspect import inspect_image
from results.models import Compression
from results.work import WorkFailed, work_get
from serving.client import ServingUnavailable
from workbench.uploads import TOO_LARGE_FORM, upload_too_large


def inspect(request: HttpRequest, pk: int) -> HttpResponse:
    job = job_selectors.job_get(user=request.user, pk=pk)
    form = SnapshotImageForm(request.POST or None, request.FILES or None, job=job)
    result, unavailable = None, None
    if upload_too_large(request):
        form.errors["image"] = form.error_class([TOO_LARGE_FORM])  # not "required": it was cut off
    elif request.method == "POST" and form.is_valid():
        try:
            result = inspect_image(job=job, image=form.cleaned_data["image"], epoch=form.cleaned_data["epoch"])
        except (JobStateError, JobInputError, WorkFailed) as exc:
            form.add_refusal(exc)
        except ServingUnavailable as exc:  # not the image's fault: said above the form, with its 503/504
            unavailable = exc
    status = unavailable.http_status if unavailable else 400 if request.method == "POST" and result is None else 200
    return render(request, "results/inspect.html", {"job": job, "form": form, "result": result,
                                                    "unavailable": unavailable}, status=status)


@require_POST
def compress(request: HttpRequest, pk: int) -> HttpResponse:
    job = job_selectors.job_get(user=request.user, pk=pk)
    method = request.POST.get("method", "")
    params = {k: request.POST[k] for k in ("amount", "epochs") if method == "prune" and request.POST.get(k)}
    try:
        epoch = float(request.POST["epoch"]) if request.POST.get("epoch") else None
        compression = compression_start(job=job, method=method, params=params, epoch=epoch)
    except (JobStateError, JobInputError, ValueError) as exc:
        messages.error(request, str(exc))
        return redirect("job-detail", pk=pk)
    return redirect("compression-detail", pk=pk, cid=compression.pk)


class CompressedImageForm(forms.Form):
    image = forms.FileField()


def compression_detail(request: HttpRequest, pk: int, cid: int) -> HttpResponse:
    compression = work_get(user=request.user, model=Compression, job_pk=pk, pk=cid)
    form = CompressedImageForm(request.POST or None, request.FILES or None)
    classified, unavailable = None, None
    if request.method == "POST" and form.is_valid():
        try:
            classified = compression_classify(compression=compression, image=form.cleaned_data["image"])
        except (JobStateError, JobInputError) as exc:
            form.add_error("image", str(exc))
        except ServingUnavailable as exc:  # not the image's fault: said above the form, with its 503/504
            unavailable = exc
    context = {"compression": compression, "job": compression.job, "form": form, "classified": classified,
               "title": METHOD_TITLES.get(compression.method, compression.method),
               "package": compression_package(compression), "unavailable": unavailable}
    status = unavailable.http_status if unavailable else 400 if request.method == "POST" and classified is None else 200
    return render(request, "results/compression.html", context, status=status)


def compression_download(request: HttpRequest, pk: int, cid: int) -> FileResponse:
    return compression_response(work_get(user=request.user, model=Compression, job_pk=pk, pk=cid))
