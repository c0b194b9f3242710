from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from datasets import selectors, services
from datasets.ingest.pipeline import IngestOptions
from datasets.models import Dataset
from datasets.options import (
    BOX_FORMAT_LABELS,
    DATASET_TASKS,
    DEFAULT_IGNORE_INDEX,
    MAX_SPLIT_PERCENT,
    MIN_SIDE,
    RESIZE_MODE_LABELS,
    max_side,
    per_class_problems,
    source_problems,
    split_problems,
    task_field_problems,
)
from workbench.api import Pagination, RequestInput, error_response, paginated


class DatasetOutput(serializers.ModelSerializer):
    image_shape = serializers.ListField(child=serializers.IntegerField(), read_only=True)
    url = serializers.SerializerMethodField()
    mean_image_url = serializers.SerializerMethodField()
    thumbnails = serializers.SerializerMethodField()
    owner = serializers.CharField(source="owner.get_username", read_only=True)
    ignore_index = serializers.SerializerMethodField(help_text="Segmentation: the mask value of no class.")
    class_pixels = serializers.JSONField(read_only=True, help_text="Segmentation: {split: {class: pixel share}}.")
    colormap = serializers.JSONField(read_only=True, help_text="Segmentation and detection: {class: [r, g, b]}.")
    box_format = serializers.SerializerMethodField(help_text="Detection: the label format read (kitti, yolo, voc, "
                                                             "coco), or \"\" before the ingest reads it.")
    box_counts = serializers.JSONField(read_only=True, help_text="Detection: {split: {class: boxes}}.")
    boxes_dropped = serializers.IntegerField(read_only=True, allow_null=True, help_text=(
        "Detection: boxes left with no area once resized and clipped to the image."))
    images_without_boxes = serializers.JSONField(read_only=True, help_text="Detection: {split: images with no box}.")

    class Meta:
        model = Dataset
        fields = ["id", "name", "owner", "task", "status", "progress", "error", "created_at", "updated_at", "source",
                  "source_name", "image_width", "image_height", "channels", "resize_mode", "val_percent",
                  "test_percent", "seed", "min_per_class", "max_per_class", "classes", "split_counts",
                  "class_counts", "image_shape", "skipped", "warnings", "attempt", "retries", "held_by", "heartbeat_at",
                  "url", "mean_image_url", "thumbnails", "ignore_index", "class_pixels", "colormap", "box_format",
                  "box_counts", "boxes_dropped", "images_without_boxes"]

    def get_ignore_index(self, dataset: Dataset) -> int | None:
        return dataset.ignore_index if dataset.task == "segmentation" else None

    def get_box_format(self, dataset: Dataset) -> str | None:
        return dataset.box_format if dataset.task == "detection" else None

    def get_url(self, dataset: Dataset) -> str:
        return reverse("dataset-detail", args=[dataset.pk])

    def get_mean_image_url(self, dataset: Dataset) -> str | None:
        return reverse("dataset-mean", args=[dataset.pk]) if dataset.status == Dataset.Status.READY else None

    def get_thumbnails(self, dataset: Dataset) -> dict[str, list[str]]:
        thumbs = selectors.dataset_thumbnails(dataset=dataset)
        return {name: [reverse("dataset-thumb", args=[dataset.pk, c, k]) for k in ks]
                for c, (name, ks) in enumerate(thumbs.items())}


class DatasetInput(RequestInput):
    name = serializers.CharField(max_length=200)
    archive = serializers.FileField(required=False)
    server_path = serializers.CharField(required=False, allow_blank=True, default="", max_length=1000)
    image_width = serializers.IntegerField(min_value=MIN_SIDE, default=32)
    image_height = serializers.IntegerField(min_value=MIN_SIDE, default=32)
    channels = serializers.ChoiceField(choices=[1, 3], default=3)
    resize_mode = serializers.ChoiceField(choices=[m for m, _ in RESIZE_MODE_LABELS], default="squash")
    val_percent = serializers.IntegerField(min_value=0, max_value=MAX_SPLIT_PERCENT, default=20)
    test_percent = serializers.IntegerField(min_value=0, max_value=MAX_SPLIT_PERCENT, default=0)
    seed = serializers.IntegerField(min_value=0, max_value=2**32 - 1, default=0)
    min_per_class = serializers.IntegerField(min_value=1, default=1)
    max_per_class = serializers.IntegerField(min_value=1, required=False, allow_null=True, default=None)
    task = serializers.CharField(required=False, default="classification",
                                 help_text="classification, segmentation or detection")
    ignore_index = serializers.IntegerField(required=False, min_value=0, max_value=255,
                                            help_text="Segmentation: the mask value that is no class (default 255).")
    box_format = serializers.ChoiceField(
        choices=[f for f, _ in BOX_FORMAT_LABELS], required=False, allow_blank=True,
        error_messages={"invalid_choice": '"{input}" is not a box format; use kitti, yolo, voc or coco (or leave it '
                                          "out to read the format from the files)."},
        help_text="Detection: kitti, yolo, voc or coco; left out, the format is read from the files.")

    def validate_task(self, task: str) -> str:
        if task not in DATASET_TASKS:
            raise serializers.ValidationError(f'"{task}" is not a task; use {", ".join(DATASET_TASKS)}.')
        return task

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        problems = source_problems("archive" in data, data["server_path"].strip())
        problems |= split_problems(data["val_percent"], data["test_percent"])
        problems |= per_class_problems(data["min_per_class"], data["max_per_class"])
        problems |= task_field_problems(data["task"], ignore_index="ignore_index" in data,
                                        box_format=bool(data.get("box_format")))
        for side in ("image_width", "image_height"):
            if data[side] > max_side():
                problems[side] = f"Ensure this value is less than or equal to {max_side()}."
        if problems:
            raise serializers.ValidationError(problems)
        return data

    def options(self) -> IngestOptions:
        d = self.validated_data
        return IngestOptions(width=d["image_width"], height=d["image_height"], channels=int(d["channels"]),
                             resize_mode=d["resize_mode"], val_percent=d["val_percent"],
                             test_percent=d["test_percent"], seed=d["seed"], min_per_class=d["min_per_class"],
                             max_per_class=d["max_per_class"], task=d["task"],
                             ignore_index=d.get("ignore_index", DEFAULT_IGNORE_INDEX),
                             box_format=d.get("box_format", ""))


def _one_of(choices: list[str], what: str) -> serializers.ChoiceField:
    """An optional choice whose error names the allowed values."""
    message = f'"{{input}}" is not a valid {what}; use one of: {", ".join(choices)}.'
    return serializers.ChoiceField(choices=choices, required=False, allow_blank=True, default="",
                                   error_messages={"invalid_choice": message})


class DatasetListQuery(serializers.Serializer):
    status = _one_of(Dataset.Status.values, "status")
    search = serializers.CharField(required=False, allow_blank=True, default="", max_length=200,
                                   help_text="Only the datasets whose name contains this (case-insensitive).")
    ordering = _one_of(selectors.DATASET_ORDERING_CHOICES, "ordering")


class DatasetListApi(APIView):
    pagination_class = Pagination

    @extend_schema(parameters=[DatasetListQuery], responses=DatasetOutput(many=True))
    def get(self, request: Request) -> Response:
        query = DatasetListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        datasets = selectors.dataset_list_filtered(user=request.user, **query.validated_data)
        return paginated(request, datasets, DatasetOutput, self)

    @extend_schema(request={"multipart/form-data": DatasetInput}, responses={201: DatasetOutput})
    def post(self, request: Request) -> Response:
        given = DatasetInput(data=request.data)
        # Only parsing the body (request.data, above) runs the upload handler that sets this flag.
        if getattr(request._request, "upload_too_large", False):
            return error_response("The upload is larger than the configured limit.", status_code=413)
        given.is_valid(raise_exception=True)
        dataset = services.dataset_create(owner=request.user, name=given.validated_data["name"],
                                          options=given.options(), archive=given.validated_data.get("archive"),
                                          server_path=given.validated_data["server_path"].strip())
        return Response(DatasetOutput(dataset).data, status=status.HTTP_201_CREATED)


class DatasetExampleInput(RequestInput):
    example = serializers.ChoiceField(choices=list(services.EXAMPLES), default="digits", help_text=(
        "digits: scikit-learn's handwritten digits (classification); segmentation: shapes on noisy "
        "backgrounds with exact masks; detection: shapes on noisy backgrounds with exact boxes."))


class DatasetExampleApi(APIView):
    @extend_schema(request=DatasetExampleInput, responses={201: DatasetOutput})
    def post(self, request: Request) -> Response:
        given = DatasetExampleInput(data=request.data)
        given.is_valid(raise_exception=True)
        dataset = services.dataset_create_example(owner=request.user, example=given.validated_data["example"])
        return Response(DatasetOutput(dataset).data, status=status.HTTP_201_CREATED)


class DatasetDetailApi(APIView):
    @extend_schema(responses=DatasetOutput)
    def get(self, request: Request, pk: int) -> Response:
        return Response(DatasetOutput(selectors.dataset_get(user=request.user, pk=pk)).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        services.dataset_delete(dataset=selectors.dataset_get(user=request.user, pk=pk))
        return Response(status=status.HTTP_204_NO_CONTENT)
