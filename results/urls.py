from __future__ import annotations

from django.urls import path

from results import api, batch_views, compress_api, compress_views, export_api, export_views, views

# Mounted under /jobs/<pk>/ beside the job's own pages.
urlpatterns = [
    path("<int:pk>/evaluate/", views.evaluate, name="job-evaluate"),
    path("<int:pk>/evaluations/<int:eid>/", views.evaluation_detail, name="evaluation-detail"),
    path("<int:pk>/classify-many/", batch_views.classify_many, name="job-classify-many"),
    path("<int:pk>/classify-many/<int:bid>/", batch_views.batch_detail, name="batch-detail"),
    path("<int:pk>/classify-many/<int:bid>/results.csv", batch_views.batch_csv, name="batch-csv"),
    path("<int:pk>/classify-many/<int:bid>/thumbs/<int:index>.png", batch_views.batch_thumb, name="batch-thumb"),
    path("<int:pk>/inspect/", compress_views.inspect, name="job-inspect"),
    path("<int:pk>/compress/", compress_views.compress, name="job-compress"),
    path("<int:pk>/compressions/<int:cid>/", compress_views.compression_detail, name="compression-detail"),
    path("<int:pk>/compressions/<int:cid>/download/", compress_views.compression_download,
         name="compression-download"),
    path("<int:pk>/export/", export_views.export, name="job-export"),
    path("<int:pk>/exports/<int:eid>/download/", export_views.export_download, name="export-download"),
    path("<int:pk>/snapshots/<str:epoch>/download/", export_views.snapshot_download, name="snapshot-download"),
]

api_urlpatterns = [
    path("jobs/<int:pk>/evaluate/", api.EvaluateApi.as_view(), name="api-job-evaluate"),
    path("jobs/<int:pk>/evaluations/", api.EvaluationListApi.as_view(), name="api-evaluation-list"),
    path("jobs/<int:pk>/evaluations/<int:eid>/", api.EvaluationDetailApi.as_view(), name="api-evaluation-detail"),
    path("jobs/<int:pk>/classify-many/", api.ClassifyManyApi.as_view(), name="api-job-classify-many"),
    path("jobs/<int:pk>/classify-many/<int:bid>/", api.BatchDetailApi.as_view(), name="api-batch-detail"),
    path("jobs/<int:pk>/classify-many/<int:bid>/results.csv", api.BatchCsvApi.as_view(), name="api-batch-csv"),
    path("jobs/<int:pk>/inspect/", compress_api.InspectApi.as_view(), name="api-job-inspect"),
    path("jobs/<int:pk>/compress/", compress_api.CompressApi.as_view(), name="api-job-compress"),
    path("jobs/<int:pk>/compressions/", compress_api.CompressionListApi.as_view(), name="api-compression-list"),
    path("jobs/<int:pk>/compressions/<int:cid>/", compress_api.CompressionDetailApi.as_view(),
         name="api-compression-detail"),
    path("jobs/<int:pk>/compressions/<int:cid>/classify/", compress_api.CompressionClassifyApi.as_view(),
         name="api-compression-classify"),
    path("jobs/<int:pk>/compressions/<int:cid>/download/", compress_api.CompressionDownloadApi.as_view(),
         name="api-compression-download"),
    path("jobs/<int:pk>/export/", export_api.ExportApi.as_view(), name="api-job-export"),
    path("jobs/<int:pk>/exports/", export_api.ExportListApi.as_view(), name="api-export-list"),
    path("jobs/<int:pk>/exports/<int:eid>/", export_api.ExportDetailApi.as_view(), name="api-export-detail"),
    path("jobs/<int:pk>/exports/<int:eid>/download/", export_api.ExportDownloadApi.as_view(),
         name="api-export-download"),
    path("jobs/<int:pk>/snapshots/<str:epoch>/download/", export_api.SnapshotDownloadApi.as_view(),
         name="api-snapshot-download"),
]
