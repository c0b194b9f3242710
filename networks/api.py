from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from datasets import selectors as dataset_selectors
from networks import selectors, services
from networks.spec import SpecError
from training.vision_tasks import TASK_NAMES
from workbench.api import Pagination, RequestInput, error_response, paginated


class NetworkEntryOutput(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    builtin = serializers.BooleanField()
    title = serializers.CharField()
    tasks = serializers.ListField(child=serializers.CharField(), help_text="The vision tasks it fits.")


class NetworkCreatedOutput(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    builtin = serializers.BooleanField()
    spec = serializers.JSONField()


class LayerRowOutput(serializers.Serializer):
    path = serializers.CharField()
    type = serializers.CharField()
    output_shape = serializers.ListField(child=serializers.IntegerField())
    params = serializers.IntegerField()
    depth = serializers.IntegerField()


class NetworkSummaryOutput(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    builtin = serializers.BooleanField()
    input_shape = serializers.ListField(child=serializers.IntegerField())
    num_classes = serializers.IntegerField()
    total_params = serializers.IntegerField()
    layers = LayerRowOutput(many=True)


class NetworkInput(RequestInput):
    name = serializers.RegexField(r"^[\w][\w .-]{0,99}$", error_messages={
        "invalid": "Use letters, digits, spaces, '.', '-' or '_' (at most 100)."})
    description = serializers.CharField(required=False, allow_blank=True, default="")
    spec = serializers.JSONField()


class NetworkListApi(APIView):
    pagination_class = Pagination

    @extend_schema(parameters=[OpenApiParameter("task", str, description="Only the networks that fit this task")],
                   responses=NetworkEntryOutput(many=True))
    def get(self, request: Request) -> Response:
        task = request.query_params.get("task", "")
        if task and task not in TASK_NAMES:
            return error_response(f"Unknown task '{task}'; known: {', '.join(TASK_NAMES)}.", {"task": ["Unknown task."]})
        return paginated(request, selectors.network_list(user=request.user, task=task), NetworkEntryOutput, self)

    @extend_schema(request=NetworkInput, responses={201: NetworkCreatedOutput})
    def post(self, request: Request) -> Response:
        given = NetworkInput(data=request.data)
        given.is_valid(raise_exception=True)
        network = services.network_create(owner=request.user, **given.validated_data)
        return Response({"id": str(network.pk), "name": network.name, "builtin": False, "spec": network.spec},
                        status=status.HTTP_201_CREATED)


class NetworkDetailApi(APIView):
    @extend_schema(parameters=[OpenApiParameter("dataset", int, description="Summarise for this dataset's input")],
                   responses=NetworkSummaryOutput)
    def get(self, request: Request, key: str) -> Response:
        entry = selectors.network_get(user=request.user, key=key)
        dataset = _dataset_param(request)
        try:
            summary, shape, classes = selectors.network_summary(entry=entry, dataset=dataset)
        except SpecError as exc:
            return error_response(f"The network does not fit this input: {exc}", {"network": [str(exc)]})
        return Response({"id": entry.id, "name": entry.name, "builtin": entry.builtin, "input_shape": shape,
                         "num_classes": classes, "total_params": summary.total_params,
                         "layers": [{"path": r.path, "type": r.type, "output_shape": r.output_shape,
                                     "params": r.params, "depth": r.depth} for r in summary.rows]})

    @extend_schema(responses={204: None})
    def delete(self, request: Request, key: str) -> Response:
        entry = selectors.network_get(user=request.user, key=key)
        if entry.builtin:
            return error_response("Built-in networks cannot be deleted.", status_code=status.HTTP_409_CONFLICT)
        services.network_delete(network=entry.network)  # type: ignore[arg-type]
        return Response(status=status.HTTP_204_NO_CONTENT)


def _dataset_param(request: Request) -> Any:
    raw = request.query_params.get("dataset", "")
    if not raw.isdigit():
        return None
    return dataset_selectors.dataset_list(user=request.user).filter(pk=int(raw)).first()
