from __future__ import annotations

from django.urls import path

from compare import api, views

urlpatterns = [
    path("", views.compare_page, name="compare"),
]

api_urlpatterns = [
    path("compare/", api.CompareApi.as_view(), name="api-compare"),
]
