from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from jobs import selectors as job_selectors
from jobs.errors import JobInputError, JobStateError
from results.evaluation import evaluation_start
from results.models import Evaluation
from results.work import work_get
from training.vision_tasks import vision_task


def _epoch(raw: str | None) -> float | None:
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


@require_POST
def evaluate(request: HttpRequest, pk: int) -> HttpResponse:
    job = job_selectors.job_get(user=request.user, pk=pk)
    try:
        evaluation, _ = evaluation_start(job=job, split=request.POST.get("split", "val"),
                                         epoch=_epoch(request.POST.get("epoch")))
    except (JobStateError, JobInputError) as exc:
        messages.error(request, str(exc))
        return redirect("job-detail", pk=pk)
    return redirect("evaluation-detail", pk=pk, eid=evaluation.pk)


def evaluation_detail(request: HttpRequest, pk: int, eid: int) -> HttpResponse:
    evaluation = work_get(user=request.user, model=Evaluation, job_pk=pk, pk=eid)
    context = {"evaluation": evaluation, "job": evaluation.job, "dataset": evaluation.job.dataset,
               **gallery_context(evaluation)}
    return render(request, vision_task(evaluation.job.dataset.task).pages["evaluation"], context)


def gallery_context(evaluation: Evaluation) -> dict[str, object]:
    """Mistakes and top-N rows with class names filled in, for the template."""
    if evaluation.status != "done":
        return {}
    names = evaluation.result["classes"]
    mistakes = [{**m, "true_name": names[m["true"]], "predicted_name": names[m["predicted"]]}
                for m in evaluation.result["mistakes"]]
    top_rows = [{"name": names[c], "items": [{**i, "true_name": names[i["true"]], "wrong": i["true"] != c}
                                             for i in items]}
                for c, items in enumerate(evaluation.result["top_per_class"])]
    return {"mistakes": mistakes, "top_rows": top_rows}
