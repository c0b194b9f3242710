"""JSON endpoints for pretrained models and the compatibility report. Owner-only; staff see all."""
from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from datasets import selectors as dataset_selectors
from jobs import selectors as job_selectors
from jobs.services import job_network_check
from pretrained import selectors, services
from pretrained.models import PretrainedModel
from workbench.api import Pagination, RequestInput, error_response, paginated
from workbench.uploads import TOO_LARGE, upload_too_large


class PretrainedOutput(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.get_username", read_only=True)
    source = serializers.CharField(help_text="upload, or job (made from a job's snapshot)")
    source_job = serializers.IntegerField(source="source_job_id", allow_null=True)
    url = serializers.SerializerMethodField()

    class Meta:
        model = PretrainedModel
        fields = ["id", "name", "owner", "network", "classes", "input_shape", "preprocessing", "source",
                  "source_job", "source_epoch", "created_at", "url"]

    def get_url(self, model: PretrainedModel) -> str:
        return reverse("pretrained-list") + f"#model-{model.pk}"


class PretrainedDetailOutput(PretrainedOutput):
    network_spec = serializers.JSONField()
    summary = serializers.SerializerMethodField()
    tensors = serializers.JSONField(help_text="{name: shape}, from the safetensors header")

    class Meta(PretrainedOutput.Meta):
        fields = PretrainedOutput.Meta.fields + ["network_spec", "summary", "tensors"]

    def get_summary(self, model: PretrainedModel) -> dict[str, Any]:
        return selectors.pretrained_summary(model=model)


class UploadInput(RequestInput):
    name = serializers.CharField(max_length=200)
    weights = serializers.FileField(help_text="safetensors")
    network = serializers.CharField(max_length=200_000, help_text="A built-in name or a layer spec as JSON")
    classes = serializers.CharField(help_text='JSON list of names, or comma-separated')
    input_shape = serializers.CharField(help_text="[C, H, W], C 1 or 3")
    preprocessing = serializers.CharField(required=False, allow_blank=True, default="",
                                          help_text='JSON, e.g. {"mean": "none", "resize_mode": "squash"}')


class PretrainedListApi(APIView):
    pagination_class = Pagination
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    @extend_schema(responses=PretrainedOutput(many=True))
    def get(self, request: Request) -> Response:
        return paginated(request, selectors.pretrained_list(user=request.user), PretrainedOutput, self)

    @extend_schema(request=UploadInput, responses={201: PretrainedDetailOutput})
    def post(self, request: Request) -> Response:
        if upload_too_large(request):
            return error_response(TOO_LARGE, {"weights": [TOO_LARGE]}, status_code=413)
        given = UploadInput(data=request.data)
        given.is_valid(raise_exception=True)
        data = dict(given.validated_data)
        weights = data.pop("weights")
        model = services.pretrained_upload(owner=request.user, upload=services.Upload(**data), weights=weights,
                                           size=weights.size)
        return Response(PretrainedDetailOutput(model).data, status=status.HTTP_201_CREATED)


class PretrainedDetailApi(APIView):
    @extend_schema(responses=PretrainedDetailOutput)
    def get(self, request: Request, pk: int) -> Response:
        return Response(PretrainedDetailOutput(selectors.pretrained_get(user=request.user, pk=pk)).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        services.pretrained_delete(model=selectors.pretrained_get(user=request.user, pk=pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class FromJobInput(RequestInput):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    epoch = serializers.FloatField(required=False, allow_null=True, default=None,
                                   help_text="A snapshot's epoch; the latest when left out")


class PretrainedFromJobApi(APIView):
    @extend_schema(request=FromJobInput, responses={201: PretrainedDetailOutput})
    def post(self, request: Request, pk: int) -> Response:
        job = job_selectors.job_get(user=request.user, pk=pk)
        given = FromJobInput(data=request.data)
        given.is_valid(raise_exception=True)
        model = services.pretrained_from_job(owner=request.user, job=job, **given.validated_data)
        return Response(PretrainedDetailOutput(model).data, status=status.HTTP_201_CREATED)


class CompatibilityQuery(serializers.Serializer):
    dataset = serializers.IntegerField()
    network = serializers.CharField(max_length=100)
    job = serializers.IntegerField(required=False, allow_null=True, default=None)
    epoch = serializers.FloatField(required=False, allow_null=True, default=None)
    model = serializers.IntegerField(required=False, allow_null=True, default=None)

    def weights_source(self) -> dict[str, Any]:
        data = self.validated_data
        if data["model"] is not None:
            return {"model": data["model"]}
        return {"job": data["job"], **({"epoch": data["epoch"]} if data["epoch"] is not None else {})} \
            if data["job"] is not None else {}


class CompatibilityOutput(serializers.Serializer):
    source = serializers.CharField(help_text='e.g. "job 3 epoch 5" or "pretrained model <name>"')
    summary = serializers.CharField()
    counts = serializers.DictField(child=serializers.IntegerField(), help_text="copied, remade, new, unused")
    rows = serializers.ListField(child=serializers.DictField(),
                                 help_text="each target tensor: name, layer, type, shape, source_shape, action")
    unused = serializers.ListField(child=serializers.DictField(), help_text="source tensors nothing takes: name, shape")


class CompatibilityApi(APIView):
    """What a fine-tune of `network` on `dataset` would copy from a job's snapshot or a pretrained model."""

    @extend_schema(parameters=[CompatibilityQuery], responses=CompatibilityOutput)
    def get(self, request: Request) -> Response:
        query = CompatibilityQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        dataset = dataset_selectors.dataset_list(user=request.user).filter(pk=query.validated_data["dataset"]).first()
        if dataset is None:
            return error_response("No such dataset.", {"dataset": ["No such dataset."]})
        spec, _ = job_network_check(owner=request.user, network=query.validated_data["network"], dataset=dataset)
        source = services.source_resolve(user=request.user, given=query.weights_source())
        return Response(services.compatibility_report(spec=spec, dataset=dataset, source=source))
