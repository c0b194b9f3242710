from __future__ import annotations

from django.urls import path

from results import api, compress_api, compress_views, views

# Mounted under /jobs/<pk>/ beside the job's own pages.
urlpatterns = [
    path("<int:pk>/evaluate/", views.evaluate, name="job-evaluate"),
    path("<int:pk>/evaluations/<int:eid>/", views.evaluation_detail, name="evaluation-detail"),
    path("<int:pk>/inspect/", compress_views.inspect, name="job-inspect"),
    path("<int:pk>/compress/", compress_views.compress, name="job-compress"),
    path("<int:pk>/compressions/<int:cid>/", compress_views.compression_detail, name="compression-detail"),
]

api_urlpatterns = [
    path("jobs/<int:pk>/evaluate/", api.EvaluateApi.as_view(), name="api-job-evaluate"),
    path("jobs/<int:pk>/evaluations/", api.EvaluationListApi.as_view(), name="api-evaluation-list"),
    path("jobs/<int:pk>/evaluations/<int:eid>/", api.EvaluationDetailApi.as_view(), name="api-evaluation-detail"),
    path("jobs/<int:pk>/inspect/", compress_api.InspectApi.as_view(), name="api-job-inspect"),
    path("jobs/<int:pk>/compress/", compress_api.CompressApi.as_view(), name="api-job-compress"),
    path("jobs/<int:pk>/compressions/", compress_api.CompressionListApi.as_view(), name="api-compression-list"),
    path("jobs/<int:pk>/compressions/<int:cid>/", compress_api.CompressionDetailApi.as_view(),
         name="api-compression-detail"),
    path("jobs/<int:pk>/compressions/<int:cid>/classify/", compress_api.CompressionClassifyApi.as_view(),
         name="api-compression-classify"),
]
