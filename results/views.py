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
    """Mistakes and top-N rows with class names filled in, for the template (segmentation: its worst images)."""
    if evaluation.status != "done":
        return {}
    if evaluation.result.get("task") == "segmentation":
        return worst_context(evaluation)
    if evaluation.result.get("task") == "detection":
        return detection_context(evaluation)
    names = evaluation.result["classes"]
    mistakes = [{**m, "true_name": names[m["true"]], "predicted_name": names[m["predicted"]]}
                for m in evaluation.result["mistakes"]]
    top_rows = [{"name": names[c], "items": [{**i, "true_name": names[i["true"]], "wrong": i["true"] != c}
                                             for i in items]}
                for c, items in enumerate(evaluation.result["top_per_class"])]
    return {"mistakes": mistakes, "top_rows": top_rows}


def worst_context(evaluation: Evaluation) -> dict[str, object]:
    """A segmentation evaluation's worst images, each predicted mask in the classes' colours (a data: URL:
    the result keeps them as PNGs of class indices) and the class colours for the legend."""
    import base64

    from datasets.ingest.store import coloured_mask_png
    from training.vision_tasks.segmentation.metrics import mask_from_png

    dataset = evaluation.job.dataset
    colours = dataset.class_colours
    worst = [{**row, "predicted": "data:image/png;base64," + base64.b64encode(coloured_mask_png(
        mask_from_png(row["mask"]), colours, dataset.ignore_index)).decode()} for row in evaluation.result["worst"]]
    legend = [{"name": name, "rgb": "rgb({}, {}, {})".format(*colours[i])} for i, name in enumerate(dataset.classes)]
    return {"worst": worst, "legend": legend}


TRUE_COLOUR, PREDICTED_COLOUR, DONT_CARE_COLOUR = "#2f9e44", "#e03131", "#868e96"


def detection_context(evaluation: Evaluation) -> dict[str, object]:
    """A detection evaluation's worst images with their boxes ready to draw (true ones in one colour,
    predicted ones in another with their scores, DontCare regions dashed), and the per-class rows."""
    names = evaluation.result["classes"]
    dataset = evaluation.job.dataset

    def name(cls: float) -> str:
        return "DontCare" if cls == -2 else names[int(cls)]

    worst = []
    for row in evaluation.result["worst"]:
        # True boxes wide and underneath, their names below them: a prediction on the spot leaves them seen.
        true = [{"box": box, "colour": DONT_CARE_COLOUR if cls == -2 else TRUE_COLOUR, "text": name(cls),
                 "dash": cls == -2, "width": 5, "below": True} for cls, *box in row["true"]]
        predicted = [{"box": box, "colour": PREDICTED_COLOUR, "text": f"{name(cls)} {score:.2f}"}
                     for cls, score, *box in row["predicted"]]
        worst.append({**row, "boxes": true + predicted})
    return {"worst": worst, "drawing": {"width": dataset.image_width, "height": dataset.image_height,
                                        "images": {str(w["index"]): w["boxes"] for w in worst}},
            "colours": {"true": TRUE_COLOUR, "predicted": PREDICTED_COLOUR, "dont_care": DONT_CARE_COLOUR}}
