"""JSON API for exports: start or reuse one, list them, read one, download its file."""
from __future__ import annotations

from django.http import Http404, HttpResponseBase
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs import selectors as job_selectors
from jobs.errors import JobInputError, JobStateError
from jobs.models import TrainingJob
from results.export import FORMATS, download_name, export_file, export_start, snapshot_file
from results.models import Export
from results.work import work_get
from workbench.api import Pagination, RequestInput, paginated
from workbench.downloads import stored_file_response


class ExportOutput(serializers.ModelSerializer):
    epoch = serializers.FloatField(source="snapshot.epoch", read_only=True)
    url = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Export
        fields = ["id", "job", "format", "epoch", "status", "progress", "error", "result", "size_bytes",
                  "attempt", "retries", "created_at", "finished_at", "url", "download_url"]

    def get_url(self, export: Export) -> str:
        return reverse("api-export-detail", args=[export.job_id, export.pk])

    def get_download_url(self, export: Export) -> str | None:
        # The API twin of the page's download link, so a script with a token can fetch it too.
        if export.status != "done":
            return None
        return reverse("api-export-download", args=[export.job_id, export.pk])


class ExportInput(RequestInput):
    # A plain string: the service names the allowed formats when it refuses one.
    format = serializers.CharField(help_text=f"One of {', '.join(FORMATS)}.")
    epoch = serializers.FloatField(required=False, allow_null=True, default=None)


class ExportApi(APIView):
    @extend_schema(request=ExportInput, responses={200: ExportOutput, 201: ExportOutput})
    def post(self, request: Request, pk: int) -> Response:
        job = job_selectors.job_get(user=request.user, pk=pk)
        given = ExportInput(data=request.data)
        given.is_valid(raise_exception=True)
        export, created = export_start(job=job, fmt=given.validated_data["format"], epoch=given.validated_data["epoch"])
        return Response(ExportOutput(export).data, status=201 if created else 200)


class ExportListApi(APIView):
    pagination_class = Pagination

    @extend_schema(responses=ExportOutput(many=True))
    def get(self, request: Request, pk: int) -> Response:
        job = job_selectors.job_get(user=request.user, pk=pk)
        return paginated(request, job.exports.select_related("snapshot"), ExportOutput, self)


class ExportDetailApi(APIView):
    @extend_schema(responses=ExportOutput)
    def get(self, request: Request, pk: int, eid: int) -> Response:
        export = work_get(user=request.user, model=Export, job_pk=pk, pk=eid)
        return Response(ExportOutput(export).data)


class ExportDownloadApi(APIView):
    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request: Request, pk: int, eid: int) -> HttpResponseBase:
        return export_response(work_get(user=request.user, model=Export, job_pk=pk, pk=eid))


class SnapshotDownloadApi(APIView):
    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request: Request, pk: int, epoch: str) -> HttpResponseBase:
        return snapshot_response(job_selectors.job_get(user=request.user, pk=pk), epoch)


def export_response(export: Export) -> HttpResponseBase:
    """The export's file as an attachment; 404 until it is done."""
    path = export_file(export)
    if path is None:
        raise Http404("This export is not ready.")
    return stored_file_response(path, filename=download_name(export), content_type="application/octet-stream")


def snapshot_response(job: TrainingJob, epoch: str) -> HttpResponseBase:
    """One snapshot's raw weights (safetensors) as an attachment; 404 for an epoch it does not have."""
    try:
        path, name = snapshot_file(job=job, epoch=float(epoch))
    except (ValueError, JobStateError, JobInputError):
        raise Http404("No such snapshot.") from None
    return stored_file_response(path, filename=name, content_type="application/octet-stream",
                                missing="The snapshot's file is gone.")
