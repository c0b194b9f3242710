from __future__ import annotations

from django.urls import path

from workers import api, views

urlpatterns = [
    path("", views.worker_list, name="worker-list"),
]

api_urlpatterns = [
    path("workers/", api.WorkerListApi.as_view(), name="api-worker-list"),
]
