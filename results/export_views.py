"""Pages for exports: start one from the job page, download the finished file or a raw snapshot."""
from __future__ import annotations

from django.contrib import messages
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from jobs import selectors as job_selectors
from jobs.errors import JobInputError, JobStateError
from results.export import FORMAT_NAMES, export_start
from results.export_api import export_response, snapshot_response
from results.models import Export
from results.views import _epoch
from results.work import work_get


@require_POST
def export(request: HttpRequest, pk: int) -> HttpResponse:
    job = job_selectors.job_get(user=request.user, pk=pk)
    fmt = request.POST.get("format", "")
    try:
        item, created = export_start(job=job, fmt=fmt, epoch=_epoch(request.POST.get("epoch")))
    except (JobStateError, JobInputError) as exc:
        messages.error(request, str(exc))
    else:
        name = FORMAT_NAMES[item.format]
        messages.success(request, f"{name} export of epoch {item.snapshot.epoch:g} "
                                  f"{'started' if created else 'is ' + item.status}.")
    return redirect(reverse("job-detail", args=[pk]) + "#exports")


def export_download(request: HttpRequest, pk: int, eid: int) -> FileResponse:
    return export_response(work_get(user=request.user, model=Export, job_pk=pk, pk=eid))


def snapshot_download(request: HttpRequest, pk: int, epoch: str) -> FileResponse:
    return snapshot_response(job_selectors.job_get(user=request.user, pk=pk), epoch)
