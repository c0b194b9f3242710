"""JSON API for inspecting a snapshot on one image and for compressing it (and using the result)."""
from __future__ import annotations

from django.http import Http404, HttpResponseBase
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs import selectors as job_selectors
from jobs.api import ClassifyOutput
from results.compress import METHODS, compression_classify, compression_package, compression_start
from results.inspect import inspect_image
from results.models import Compression
from results.work import work_get
from workbench.api import Pagination, RequestInput, error_response, paginated
from workbench.downloads import stored_file_response
from workbench.uploads import TOO_LARGE, upload_too_large


class ImageInput(RequestInput):
    image = serializers.FileField()
    epoch = serializers.FloatField(required=False, allow_null=True, default=None)


class InspectOutput(serializers.Serializer):
    layers = serializers.ListField(child=serializers.JSONField(), help_text="Per layer: shape, activation "
                                   "statistics, channel maps (PNG data URLs) and weight statistics.")
    predictions = serializers.ListField(child=serializers.JSONField())


class InspectApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(request=ImageInput, responses=InspectOutput)
    def post(self, request: Request, pk: int) -> Response:
        job = job_selectors.job_get(user=request.user, pk=pk)
        given = ImageInput(data=request.data)
        if upload_too_large(request):
            return error_response(TOO_LARGE, status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        given.is_valid(raise_exception=True)
        return Response(inspect_image(job=job, **given.validated_data))


class CompressionOutput(serializers.ModelSerializer):
    epoch = serializers.FloatField(source="snapshot.epoch", read_only=True)
    url = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField(
        help_text="The compressed model as an archive with predict.py, once done; null before.")

    class Meta:
        model = Compression
        fields = ["id", "job", "method", "params", "epoch", "status", "progress", "error", "result",
                  "attempt", "retries", "created_at", "finished_at", "url", "download_url"]

    def get_url(self, compression: Compression) -> str:
        return reverse("api-compression-detail", args=[compression.job_id, compression.pk])

    def get_download_url(self, compression: Compression) -> str | None:
        if compression_package(compression) is None:
            return None
        return reverse("api-compression-download", args=[compression.job_id, compression.pk])


class CompressInput(RequestInput):
    # Plain values: the service names the allowed methods and the parameter that is out of range.
    method = serializers.CharField(help_text=f"One of {', '.join(METHODS)}.")
    params = serializers.DictField(required=False, default=dict, help_text="prune: amount (0.05-0.95), epochs.")
    epoch = serializers.FloatField(required=False, allow_null=True, default=None)


class CompressApi(APIView):
    @extend_schema(request=CompressInput, responses={201: CompressionOutput})
    def post(self, request: Request, pk: int) -> Response:
        job = job_selectors.job_get(user=request.user, pk=pk)
        given = CompressInput(data=request.data)
        given.is_valid(raise_exception=True)
        compression = compression_start(job=job, **given.validated_data)
        return Response(CompressionOutput(compression).data, status=status.HTTP_201_CREATED)


class CompressionListApi(APIView):
    pagination_class = Pagination

    @extend_schema(responses=CompressionOutput(many=True))
    def get(self, request: Request, pk: int) -> Response:
        job = job_selectors.job_get(user=request.user, pk=pk)
        # The download link reads the job (its folder and name) on every done row.
        return paginated(request, job.compressions.select_related("snapshot", "job"), CompressionOutput, self)


class CompressionDetailApi(APIView):
    @extend_schema(responses=CompressionOutput)
    def get(self, request: Request, pk: int, cid: int) -> Response:
        compression = work_get(user=request.user, model=Compression, job_pk=pk, pk=cid)
        return Response(CompressionOutput(compression).data)


class CompressedImageInput(RequestInput):
    image = serializers.FileField()


class CompressionClassifyApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(request=CompressedImageInput, responses=ClassifyOutput)
    def post(self, request: Request, pk: int, cid: int) -> Response:
        compression = work_get(user=request.user, model=Compression, job_pk=pk, pk=cid)
        given = CompressedImageInput(data=request.data)
        if upload_too_large(request):
            return error_response(TOO_LARGE, status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        given.is_valid(raise_exception=True)
        return Response(compression_classify(compression=compression, image=given.validated_data["image"]))


def compression_response(compression: Compression) -> HttpResponseBase:
    """The compressed model's archive as an attachment; 404 until it is done."""
    package = compression_package(compression)
    if package is None:
        raise Http404("This compression has no download yet.")
    path, name = package
    return stored_file_response(path, filename=name, content_type="application/zip")


class CompressionDownloadApi(APIView):
    @extend_schema(responses={(200, "application/zip"): OpenApiTypes.BINARY})
    def get(self, request: Request, pk: int, cid: int) -> HttpResponseBase:
        return compression_response(work_get(user=request.user, model=Compression, job_pk=pk, pk=cid))
