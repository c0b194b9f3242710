from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from datasets import selectors, services
from datasets.forms import DatasetForm
from datasets.ingest.store import thumb_path
from training.vision_tasks import vision_task
from workbench.pagination import page_context
from workbench.uploads import TOO_LARGE_FORM, upload_too_large


def dataset_list(request: HttpRequest) -> HttpResponse:
    context = page_context(request, selectors.dataset_list(user=request.user))
    return render(request, "datasets/list.html", context | {"datasets": context["page"]})


def dataset_create(request: HttpRequest) -> HttpResponse:
    form = DatasetForm(request.POST or None, request.FILES or None)
    if upload_too_large(request):
        form.add_error("archive", TOO_LARGE_FORM)
    elif request.method == "POST" and form.is_valid():
        try:
            dataset = services.dataset_create(owner=request.user, name=form.cleaned_data["name"],
                                              options=form.options(), archive=form.cleaned_data.get("archive"),
                                              server_path=form.cleaned_data["server_path"].strip())
        except services.DatasetInputError as exc:
            form.add_error(exc.field, str(exc))
        else:
            return redirect("dataset-detail", pk=dataset.pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "datasets/create.html", {"form": form}, status=status)


@require_POST
def dataset_create_example(request: HttpRequest) -> HttpResponse:
    example = request.POST.get("example", "digits")
    if example not in services.EXAMPLES:
        raise Http404("No such example.")
    dataset = services.dataset_create_example(owner=request.user, example=example)
    return redirect("dataset-detail", pk=dataset.pk)


def dataset_detail(request: HttpRequest, pk: int) -> HttpResponse:
    dataset = selectors.dataset_get(user=request.user, pk=pk)
    context = {"dataset": dataset, "thumbnails": selectors.dataset_thumbnails(dataset=dataset),
               "count_rows": selectors.dataset_count_rows(dataset=dataset)}
    if dataset.task == "segmentation":
        context |= {"pixel_rows": selectors.dataset_pixel_rows(dataset=dataset),
                    "samples": selectors.dataset_samples(dataset=dataset)}
    if dataset.task == "detection" and dataset.status == dataset.Status.READY:
        context |= {"box_rows": selectors.dataset_box_rows(dataset=dataset),
                    "box_sizes": selectors.dataset_box_sizes(dataset=dataset),
                    "samples": selectors.dataset_samples(dataset=dataset)}
    return render(request, vision_task(dataset.task).pages["dataset"], context)


@require_POST
def dataset_delete(request: HttpRequest, pk: int) -> HttpResponse:
    dataset = selectors.dataset_get(user=request.user, pk=pk)
    try:
        services.dataset_delete(dataset=dataset)
    except services.DatasetBusy as exc:
        messages.error(request, str(exc))
        return redirect("dataset-detail", pk=pk)
    messages.success(request, f"Deleted dataset '{dataset.name}'.")
    return redirect("dataset-list")


def dataset_mean_image(request: HttpRequest, pk: int) -> HttpResponse:
    dataset = selectors.dataset_get(user=request.user, pk=pk)
    return _png(selectors.dataset_files(dataset) / "mean.png")


def dataset_thumbnail(request: HttpRequest, pk: int, class_index: int, k: int) -> HttpResponse:
    dataset = selectors.dataset_get(user=request.user, pk=pk)
    return _png(thumb_path(selectors.dataset_files(dataset), class_index, k))


def _png(path) -> HttpResponse:  # type: ignore[no-untyped-def]
    if not path.is_file():
        raise Http404("No such image.")
    # Small files: a plain response avoids a sync file iterator under the ASGI server.
    response = HttpResponse(path.read_bytes(), content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    return response


def dataset_image(request: HttpRequest, pk: int, split: str, index: int) -> HttpResponse:
    """One pre-decoded image of a split, as PNG: galleries of mistakes and top images use these."""
    from datasets.ingest.store import image_png

    dataset = selectors.dataset_get(user=request.user, pk=pk)
    png = image_png(selectors.dataset_files(dataset), split, index) if split in ("train", "val", "test") else None
    if png is None:
        raise Http404("No such image.")
    response = HttpResponse(png, content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    return response


def dataset_mask(request: HttpRequest, pk: int, split: str, index: int) -> HttpResponse:
    """One mask of a segmentation dataset's split, in its classes' colours (ignore_index transparent), as
    PNG: the explore page lays it over the image from dataset_image."""
    from datasets.ingest.store import mask_png

    dataset = selectors.dataset_get(user=request.user, pk=pk)
    colours = list((dataset.colormap or {}).values())
    png = mask_png(selectors.dataset_files(dataset), split, index, colours, dataset.ignore_index) if split in ("train", "val", "test") else None
    if png is None:
        raise Http404("No such mask.")
    response = HttpResponse(png, content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    return response


def dataset_boxes(request: HttpRequest, pk: int, split: str, index: int) -> HttpResponse:
    """One image of a detection dataset's split with its boxes drawn and labelled in its classes' colours,
    as PNG: the explore page's samples."""
    from datasets.ingest.store import boxes_png

    dataset = selectors.dataset_get(user=request.user, pk=pk)
    png = None
    if dataset.task == "detection" and split in ("train", "val", "test"):
        png = boxes_png(selectors.dataset_files(dataset), split, index, dataset.classes, dataset.class_colours)
    if png is None:
        raise Http404("No such image.")
    response = HttpResponse(png, content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    return response
