"""`GET backends/`: what each configured training backend is and can do."""
from __future__ import annotations

from dataclasses import asdict

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from training.backends import backend_list
from workbench.api import Pagination, paginated


class BackendOutput(serializers.Serializer):
    alias = serializers.CharField(help_text="What POST jobs/ names in `backend`.")
    framework = serializers.CharField()
    version = serializers.CharField(help_text="The framework's installed version on the web host.")
    tasks = serializers.ListField(child=serializers.CharField(), help_text="The vision tasks it trains.")
    capabilities = serializers.DictField(help_text="resume, export_formats, inspect, compress_methods, amp_modes, "
                                                   "augmentation, distributed, compile, layer_types, "
                                                   "augmentation_keys.")


class BackendListApi(APIView):
    pagination_class = Pagination

    @extend_schema(responses=BackendOutput(many=True))
    def get(self, request: Request) -> Response:
        return paginated(request, [asdict(entry) for entry in backend_list()], BackendOutput, self)
