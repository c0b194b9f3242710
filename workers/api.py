from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from workbench.pagination import Pagination
from workers import selectors


class DeviceOutput(serializers.Serializer):
    id = serializers.CharField(help_text="cuda:N or cpu")
    name = serializers.CharField()
    memory_total = serializers.IntegerField(allow_null=True, help_text="bytes")
    memory_used = serializers.IntegerField(allow_null=True, help_text="bytes")
    utilization = serializers.FloatField(allow_null=True, help_text="0..1")
    temperature = serializers.FloatField(allow_null=True, help_text="°C")
    source = serializers.CharField(help_text="nvml, torch or host: where the reading comes from")
    jobs = serializers.ListField(child=serializers.DictField(), help_text="your jobs running on it or holding it: "
                                 "{id, name, url, held} (held: the job holds the device, a DeviceLease)")
    busy = serializers.IntegerField(help_text="jobs running on it or holding it, yours and others'")
    held_by_others = serializers.IntegerField(help_text="other users' jobs holding it: counted, not named")


class WarmModelOutput(serializers.Serializer):
    name = serializers.CharField(help_text='The model file from the jobs folder, e.g. "jobs/12/snapshots/epoch_3.safetensors"; '
                                           f'"{selectors.HIDDEN_MODEL}" for a job you may not see')
    job = serializers.IntegerField(allow_null=True, help_text="its job's id, when you may see that job; else null")
    backend = serializers.CharField(help_text="the training backend that loaded it, e.g. torch")
    bytes = serializers.IntegerField(help_text="memory it holds while warm")
    hits = serializers.IntegerField(help_text="requests answered with it since it was loaded")
    loaded_at = serializers.FloatField(help_text="when it was loaded, in seconds since the epoch")


class ServingOutput(serializers.Serializer):
    device = serializers.CharField(help_text="where its models run: cpu, cuda:N")
    models = WarmModelOutput(many=True, help_text="the models it holds loaded, most recently used first")
    bytes = serializers.IntegerField(help_text="memory its warm models hold, all together")
    capacity_bytes = serializers.IntegerField(help_text="the most its warm models may hold "
                                                        "(WORKBENCH_SERVING_CACHE_MB); least recently used go first")
    batches = serializers.IntegerField(help_text="forward passes run since it started")
    requests = serializers.IntegerField(help_text="requests answered since it started (concurrent ones share a batch)")
    largest_batch = serializers.IntegerField(help_text="most requests answered by one forward pass")


class WorkerOutput(serializers.Serializer):
    name = serializers.CharField()
    host = serializers.CharField()
    pid = serializers.IntegerField()
    queues = serializers.ListField(child=serializers.CharField())
    concurrency = serializers.IntegerField()
    alive = serializers.BooleanField()
    started_at = serializers.DateTimeField()
    seen_at = serializers.DateTimeField()
    devices = DeviceOutput(many=True)
    serving = ServingOutput(allow_null=True, help_text="what it serves (classify, infer, inspect, previews) as it "
                            "last reported; null for a worker that does not consume the serving queue")


def worker_dict(view: selectors.WorkerView) -> dict[str, Any]:
    worker = view.worker
    return {"name": worker.name, "host": worker.host, "pid": worker.pid, "queues": worker.queues,
            "concurrency": worker.concurrency, "alive": view.alive, "started_at": worker.started_at,
            "seen_at": worker.seen_at, "devices": [_device_dict(device) for device in view.devices],
            "serving": asdict(view.serving) if view.serving else None}


def _device_dict(device: selectors.DeviceView) -> dict[str, Any]:
    jobs = [{"id": job.pk, "name": job.name, "url": reverse("job-detail", args=[job.pk]), "held": job.pk in device.held}
            for job in device.jobs]
    return {**{key: device.reading.get(key) for key in ("id", "name", "memory_total", "memory_used", "utilization",
                                                        "temperature", "source")},
            "jobs": jobs, "busy": device.busy, "held_by_others": device.held_by_others}


class WorkerListApi(APIView):
    pagination_class = Pagination

    @extend_schema(responses=WorkerOutput(many=True))
    def get(self, request: Request) -> Response:
        views = selectors.worker_list(user=request.user)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(views, request, view=self)
        return paginator.get_paginated_response(WorkerOutput([worker_dict(v) for v in page], many=True).data)
