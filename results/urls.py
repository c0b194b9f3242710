from __future__ import annotations

from django.urls import path

from results import api, views

# Mounted under /jobs/<pk>/ beside the job's own pages.
urlpatterns = [
    path("<int:pk>/evaluate/", views.evaluate, name="job-evaluate"),
    path("<int:pk>/evaluations/<int:eid>/", views.evaluation_detail, name="evaluation-detail"),
]

api_urlpatterns = [
    path("jobs/<int:pk>/evaluate/", api.EvaluateApi.as_view(), name="api-job-evaluate"),
    path("jobs/<int:pk>/evaluations/", api.EvaluationListApi.as_view(), name="api-evaluation-list"),
    path("jobs/<int:pk>/evaluations/<int:eid>/", api.EvaluationDetailApi.as_view(), name="api-evaluation-detail"),
]
