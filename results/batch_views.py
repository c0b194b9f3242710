"""Pages for classify many: start one from the job page, watch it, read its rows, download the CSV."""
from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from jobs import selectors as job_selectors
from jobs.errors import JobInputError, JobStateError
from results.batch import CSV, batch_rows, batch_start, listing_text, thumb_path
from results.models import BatchClassification
from results.views import _epoch
from results.work import work_get
from workbench.downloads import stored_file_response
from workbench.uploads import TOO_LARGE_FORM, upload_too_large

ROWS_PER_PAGE = 100


@require_POST
def classify_many(request: HttpRequest, pk: int) -> HttpResponse:
    job = job_selectors.job_get(user=request.user, pk=pk)
    files = request.FILES  # parsing the body is what marks an over-cap upload
    if upload_too_large(request):
        messages.error(request, TOO_LARGE_FORM)
        return redirect("job-detail", pk=pk)
    try:
        listing = listing_text(files.get("listing_file") or request.POST.get("listing", "").strip() or None)
        batch = batch_start(job=job, name=request.POST.get("name", "").strip(), archive=files.get("archive"),
                            listing=listing, epoch=_epoch(request.POST.get("epoch")))
    except (JobStateError, JobInputError) as exc:
        messages.error(request, str(exc))
        return redirect("job-detail", pk=pk)
    return redirect("batch-detail", pk=pk, bid=batch.pk)


def batch_detail(request: HttpRequest, pk: int, bid: int) -> HttpResponse:
    batch = work_get(user=request.user, model=BatchClassification, job_pk=pk, pk=bid)
    context: dict[str, object] = {"batch": batch, "job": batch.job}
    if batch.status == "done":
        page = Paginator(batch_rows(batch), ROWS_PER_PAGE).get_page(request.GET.get("page"))
        context["page"] = page
        context["rows"] = [{**row, "index": page.start_index() - 1 + i, "correct": _correct(row)}
                           for i, row in enumerate(page.object_list)]
    return render(request, "results/batch.html", context)


def _correct(row: dict[str, object]) -> bool | None:
    top = row["top"]
    if not row["true"] or not top:
        return None
    return top[0][0] == row["true"]  # type: ignore[index]


def batch_csv(request: HttpRequest, pk: int, bid: int) -> HttpResponseBase:
    return csv_response(work_get(user=request.user, model=BatchClassification, job_pk=pk, pk=bid))


def csv_response(batch: BatchClassification) -> HttpResponseBase:
    if batch.status != "done":
        raise Http404("The results are not ready.")
    return stored_file_response(batch.folder / CSV, filename=f"classify-many-{batch.pk}.csv", content_type="text/csv",
                                missing="The results are not ready.")


def batch_thumb(request: HttpRequest, pk: int, bid: int, index: int) -> HttpResponseBase:
    batch = work_get(user=request.user, model=BatchClassification, job_pk=pk, pk=bid)
    return stored_file_response(thumb_path(batch.folder, index), content_type="image/png", missing="No thumbnail.")
