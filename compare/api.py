from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from compare import selectors
from workbench.api import error_response


class CompareQuery(serializers.Serializer):
    jobs = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000,
                                 help_text=f"Job ids, comma-separated (at most {selectors.MAX_JOBS}).")
    group = serializers.CharField(required=False, allow_blank=True, default="", max_length=100,
                                  help_text="Instead of jobs: every job of this group.")
    x = serializers.ChoiceField(choices=selectors.AXES, default="epoch",
                                help_text="The x of each [x, value] pair: epoch, step, or seconds since the "
                                          "job's first point (time).")
    max_points = serializers.IntegerField(min_value=2, max_value=100_000, default=selectors.DEFAULT_MAX_POINTS,
                                          help_text="At most this many points per curve, minima and maxima kept.")


class CompareApi(APIView):
    @extend_schema(parameters=[CompareQuery], responses={200: dict})
    def get(self, request: Request) -> Response:
        query = CompareQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        given = query.validated_data
        try:
            ids = selectors.compare_job_ids(user=request.user, jobs=given["jobs"], group=given["group"])
            jobs = selectors.compare_jobs(user=request.user, ids=ids)
        except selectors.CompareInputError as exc:
            return error_response(f"{exc.field}: {exc}", {exc.field: [str(exc)]})
        except selectors.JobsNotFound as exc:
            return error_response(str(exc), {"jobs": [str(exc)]}, status_code=status.HTTP_404_NOT_FOUND)
        return Response(selectors.compare_payload(jobs=jobs, x=given["x"], max_points=given["max_points"]))
