from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs import selectors as job_selectors
from jobs.services import JobInputError, JobStateError
from results.evaluation import SPLITS, evaluation_start
from results.models import Evaluation
from results.work import work_get
from workbench.api import error_response


def refused(exc: Exception) -> Response:
    """The API answer for a service refusal: 409 for a state problem, 400 naming the field otherwise."""
    if isinstance(exc, JobStateError):
        return error_response(str(exc), status_code=status.HTTP_409_CONFLICT)
    field = getattr(exc, "field", None) or "non_field_errors"
    return error_response(str(exc), {field: [str(exc)]})


class EvaluationOutput(serializers.ModelSerializer):
    epoch = serializers.FloatField(source="snapshot.epoch", read_only=True)
    url = serializers.SerializerMethodField()

    class Meta:
        model = Evaluation
        fields = ["id", "job", "split", "epoch", "status", "progress", "error", "result", "created_at",
                  "finished_at", "url"]

    def get_url(self, evaluation: Evaluation) -> str:
        return reverse("evaluation-detail", args=[evaluation.job_id, evaluation.pk])


class EvaluateInput(serializers.Serializer):
    split = serializers.ChoiceField(choices=SPLITS, default="val")
    epoch = serializers.FloatField(required=False, allow_null=True, default=None)


class EvaluateApi(APIView):
    @extend_schema(request=EvaluateInput, responses={200: EvaluationOutput, 201: EvaluationOutput})
    def post(self, request: Request, pk: int) -> Response:
        job = job_selectors.job_get(user=request.user, pk=pk)
        given = EvaluateInput(data=request.data)
        given.is_valid(raise_exception=True)
        try:
            evaluation, created = evaluation_start(job=job, **given.validated_data)
        except (JobStateError, JobInputError) as exc:
            return refused(exc)
        return Response(EvaluationOutput(evaluation).data, status=201 if created else 200)


class EvaluationListApi(APIView):
    @extend_schema(responses=EvaluationOutput(many=True))
    def get(self, request: Request, pk: int) -> Response:
        job = job_selectors.job_get(user=request.user, pk=pk)
        return Response(EvaluationOutput(job.evaluations.select_related("snapshot"), many=True).data)


class EvaluationDetailApi(APIView):
    @extend_schema(responses=EvaluationOutput)
    def get(self, request: Request, pk: int, eid: int) -> Response:
        evaluation = work_get(user=request.user, model=Evaluation, job_pk=pk, pk=eid)
        return Response(EvaluationOutput(evaluation).data)


