from __future__ import annotations

from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs import selectors as job_selectors
from results.batch import batch_start, listing_text
from results.evaluation import SPLITS, evaluation_start
from results.models import BatchClassification, Evaluation
from results.work import work_get
from workbench.api import Pagination, RequestInput, error_response, paginated
from workbench.uploads import TOO_LARGE, upload_too_large


class EvaluationOutput(serializers.ModelSerializer):
    epoch = serializers.FloatField(source="snapshot.epoch", read_only=True)
    url = serializers.SerializerMethodField()

    class Meta:
        model = Evaluation
        fields = ["id", "job", "split", "epoch", "status", "progress", "error", "result", "attempt", "retries",
                  "created_at", "finished_at", "url"]

    def get_url(self, evaluation: Evaluation) -> str:
        return reverse("evaluation-detail", args=[evaluation.job_id, evaluation.pk])


class EvaluateInput(RequestInput):
    split = serializers.ChoiceField(choices=SPLITS, default="val")
    epoch = serializers.FloatField(required=False, allow_null=True, default=None)


class EvaluateApi(APIView):
    @extend_schema(request=EvaluateInput, responses={200: EvaluationOutput, 201: EvaluationOutput})
    def post(self, request: Request, pk: int) -> Response:
        job = job_selectors.job_get(user=request.user, pk=pk)
        given = EvaluateInput(data=request.data)
        given.is_valid(raise_exception=True)
        evaluation, created = evaluation_start(job=job, **given.validated_data)
        return Response(EvaluationOutput(evaluation).data, status=201 if created else 200)


class EvaluationListApi(APIView):
    pagination_class = Pagination

    @extend_schema(responses=EvaluationOutput(many=True))
    def get(self, request: Request, pk: int) -> Response:
        job = job_selectors.job_get(user=request.user, pk=pk)
        return paginated(request, job.evaluations.select_related("snapshot"), EvaluationOutput, self)


class EvaluationDetailApi(APIView):
    @extend_schema(responses=EvaluationOutput)
    def get(self, request: Request, pk: int, eid: int) -> Response:
        evaluation = work_get(user=request.user, model=Evaluation, job_pk=pk, pk=eid)
        return Response(EvaluationOutput(evaluation).data)


# --- classify many -------------------------------------------------------------------------------

class BatchOutput(serializers.ModelSerializer):
    epoch = serializers.FloatField(source="snapshot.epoch", read_only=True)
    url = serializers.SerializerMethodField()
    csv_url = serializers.SerializerMethodField()

    class Meta:
        model = BatchClassification
        fields = ["id", "job", "name", "source", "has_labels", "epoch", "status", "progress", "error", "result",
                  "attempt", "retries", "created_at", "finished_at", "url", "csv_url"]

    def get_url(self, batch: BatchClassification) -> str:
        return reverse("batch-detail", args=[batch.job_id, batch.pk])

    def get_csv_url(self, batch: BatchClassification) -> str:
        return reverse("api-batch-csv", args=[batch.job_id, batch.pk])


@extend_schema_field(OpenApiTypes.STR)
class TextOrFileField(serializers.Field):
    """Text as it came: a text field or an uploaded file (results.batch.listing_text reads either)."""

    def to_internal_value(self, data: object) -> object:
        return data


class ClassifyManyInput(RequestInput):
    archive = serializers.FileField(required=False, allow_empty_file=False)
    listing = TextOrFileField(required=False, help_text="A text file, or text: one path per line, "
                              "optionally followed by a tab, comma or space and the true label.")
    name = serializers.CharField(required=False, allow_blank=True, max_length=300, default="")
    epoch = serializers.FloatField(required=False, allow_null=True, default=None)


class ClassifyManyApi(APIView):
    pagination_class = Pagination

    @extend_schema(request={"multipart/form-data": ClassifyManyInput}, responses={201: BatchOutput})
    def post(self, request: Request, pk: int) -> Response:
        job = job_selectors.job_get(user=request.user, pk=pk)
        given = ClassifyManyInput(data=request.data)  # parsing the body runs the upload handler's size cap
        if upload_too_large(request):
            return error_response(TOO_LARGE, status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        given.is_valid(raise_exception=True)
        fields = dict(given.validated_data)
        batch = batch_start(job=job, listing=listing_text(fields.pop("listing", None)), **fields)
        return Response(BatchOutput(batch).data, status=201)

    @extend_schema(responses=BatchOutput(many=True))
    def get(self, request: Request, pk: int) -> Response:
        job = job_selectors.job_get(user=request.user, pk=pk)
        return paginated(request, job.batchclassifications.select_related("snapshot"), BatchOutput, self)


class BatchDetailApi(APIView):
    @extend_schema(responses=BatchOutput)
    def get(self, request: Request, pk: int, bid: int) -> Response:
        batch = work_get(user=request.user, model=BatchClassification, job_pk=pk, pk=bid)
        return Response(BatchOutput(batch).data)


class _CsvRenderer(BaseRenderer):
    media_type, format = "text/csv", "csv"

    def render(self, data: object, accepted_media_type: str | None = None,
               renderer_context: dict[str, object] | None = None) -> bytes:
        return data if isinstance(data, bytes) else str(data).encode()


class BatchCsvApi(APIView):
    renderer_classes = [_CsvRenderer, JSONRenderer]

    @extend_schema(operation_id="jobs_classify_many_csv", responses={(200, "text/csv"): OpenApiTypes.BINARY})
    def get(self, request: Request, pk: int, bid: int) -> FileResponse:
        from results.batch_views import csv_response

        return csv_response(work_get(user=request.user, model=BatchClassification, job_pk=pk, pk=bid))
