from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.fields import empty
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from datasets import selectors as dataset_selectors
from jobs.api import setting_field
from sweeps import selectors, services
from sweeps.models import Sweep
from workbench.api import NoInput, Pagination, RequestInput, error_response, paginated


class SweepInput(RequestInput):
    name = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")
    dataset = serializers.IntegerField()
    network = serializers.CharField(max_length=100)
    base = serializers.JSONField(required=False, default=dict, help_text="Any POST jobs/ field.")
    grid = serializers.JSONField(required=False, default=None, help_text="{field: [value, ...]}")
    search = serializers.JSONField(required=False, default=None, help_text="{method: random|tpe, trials, seed, "
                                   "space: {field: {low, high, log} or {choices: [...]}}}")
    max_concurrent = serializers.IntegerField(required=False, default=2)
    early_stopping = serializers.JSONField(required=False, default=None, help_text="{method: asha, metric, mode, "
                                           "grace_epochs, reduction_factor} or null")

    def spec(self) -> services.SweepSpec:
        data = {k: v for k, v in self.validated_data.items() if k != "dataset"}
        return services.SweepSpec(**data)


class SweepOutput(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.get_username", read_only=True)
    progress = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    class Meta:
        model = Sweep
        fields = ["id", "name", "owner", "status", "progress", "error", "dataset", "network", "metric", "mode",
                  "trials_total", "max_concurrent", "created_at", "finished_at", "url"]

    def get_progress(self, sweep: Sweep) -> float:
        return selectors.sweep_progress(sweep=sweep)

    def get_url(self, sweep: Sweep) -> str:
        return reverse("sweep-detail", args=[sweep.pk])


class SweepListApi(APIView):
    pagination_class = Pagination

    @extend_schema(responses=SweepOutput(many=True))
    def get(self, request: Request) -> Response:
        return paginated(request, selectors.sweep_list(user=request.user), SweepOutput, self)

    @extend_schema(request=SweepInput, responses={201: SweepOutput})
    def post(self, request: Request) -> Response:
        given = SweepInput(data=request.data)
        given.is_valid(raise_exception=True)
        dataset = dataset_selectors.dataset_list(user=request.user).filter(pk=given.validated_data["dataset"]).first()
        if dataset is None:
            return error_response("No such dataset.", {"dataset": ["No such dataset."]})
        sweep = services.sweep_create(owner=request.user, dataset=dataset, spec=given.spec())
        return Response(SweepOutput(sweep).data, status=status.HTTP_201_CREATED)


class SweepDetailApi(APIView):
    @extend_schema(responses=dict[str, Any])
    def get(self, request: Request, pk: int) -> Response:
        sweep = selectors.sweep_get(user=request.user, pk=pk)
        return Response(selectors.sweep_dict(sweep=sweep))


class SweepAbortApi(APIView):
    @extend_schema(request=NoInput, responses=SweepOutput)
    def post(self, request: Request, pk: int) -> Response:
        sweep = selectors.sweep_get(user=request.user, pk=pk)
        NoInput(data=request.data).is_valid(raise_exception=True)
        sweep = services.sweep_abort(sweep=sweep)
        return Response(SweepOutput(sweep).data)


class TrainBestInput(RequestInput):
    epochs = setting_field("epochs", default=empty, required=True)


class SweepTrainBestApi(APIView):
    @extend_schema(request=TrainBestInput, responses={201: dict[str, Any]})
    def post(self, request: Request, pk: int) -> Response:
        sweep = selectors.sweep_get(user=request.user, pk=pk)
        given = TrainBestInput(data=request.data)
        given.is_valid(raise_exception=True)
        job = services.sweep_train_best(sweep=sweep, owner=request.user, epochs=given.validated_data["epochs"])
        return Response({"id": job.pk, "status": job.status, "url": reverse("job-detail", args=[job.pk])},
                        status=status.HTTP_201_CREATED)
