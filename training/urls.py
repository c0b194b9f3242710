from __future__ import annotations

from django.urls import path

from training import api

api_urlpatterns = [
    path("backends/", api.BackendListApi.as_view(), name="api-backend-list"),
]
