from __future__ import annotations

from django.urls import path

from jobs import api, augmentation_api, views

urlpatterns = [
    path("", views.job_list, name="job-list"),
    path("new/", views.job_create, name="job-create"),
    path("bulk/", views.job_bulk, name="job-bulk"),
    path("<int:pk>/", views.job_detail, name="job-detail"),
    path("<int:pk>/abort/", views.job_abort, name="job-abort"),
    path("<int:pk>/resume/", views.job_resume, name="job-resume"),
    path("<int:pk>/delete/", views.job_delete, name="job-delete"),
    path("<int:pk>/classify/", views.job_classify_view, name="job-classify"),
]

api_urlpatterns = [
    path("jobs/", api.JobListApi.as_view(), name="api-job-list"),
    path("jobs/<int:pk>/", api.JobDetailApi.as_view(), name="api-job-detail"),
    path("jobs/<int:pk>/abort/", api.JobAbortApi.as_view(), name="api-job-abort"),
    path("jobs/<int:pk>/resume/", api.JobResumeApi.as_view(), name="api-job-resume"),
    path("jobs/<int:pk>/clone/", api.JobCloneApi.as_view(), name="api-job-clone"),
    path("jobs/<int:pk>/metrics/", api.JobMetricsApi.as_view(), name="api-job-metrics"),
    path("jobs/<int:pk>/classify/", api.JobClassifyApi.as_view(), name="api-job-classify"),
    path("jobs/<int:pk>/infer/", api.JobInferApi.as_view(), name="api-job-infer"),
    path("lr-schedule/", api.LrScheduleApi.as_view(), name="api-lr-schedule"),
    path("datasets/<int:pk>/augmentation-preview/", augmentation_api.AugmentationPreviewApi.as_view(),
         name="api-augmentation-preview"),
]
