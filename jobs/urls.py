from __future__ import annotations

from django.urls import path

from jobs import api, augmentation_api, events, views

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

network_urlpatterns = [
    path("", views.network_list, name="network-list"),
    path("new/", views.network_create, name="network-create"),
    path("<str:key>/", views.network_detail, name="network-detail"),
]

api_urlpatterns = [
    path("jobs/", api.JobListApi.as_view(), name="api-job-list"),
    path("jobs/<int:pk>/", api.JobDetailApi.as_view(), name="api-job-detail"),
    path("jobs/<int:pk>/abort/", api.JobAbortApi.as_view(), name="api-job-abort"),
    path("jobs/<int:pk>/resume/", api.JobResumeApi.as_view(), name="api-job-resume"),
    path("jobs/<int:pk>/clone/", api.JobCloneApi.as_view(), name="api-job-clone"),
    path("jobs/<int:pk>/metrics/", api.JobMetricsApi.as_view(), name="api-job-metrics"),
    path("jobs/<int:pk>/events/", events.job_events, name="api-job-events"),
    path("jobs/<int:pk>/classify/", api.JobClassifyApi.as_view(), name="api-job-classify"),
    path("lr-schedule/", api.LrScheduleApi.as_view(), name="api-lr-schedule"),
    path("datasets/<int:pk>/augmentation-preview/", augmentation_api.AugmentationPreviewApi.as_view(),
         name="api-augmentation-preview"),
    path("networks/", api.NetworkListApi.as_view(), name="api-network-list"),
    path("networks/<str:key>/", api.NetworkDetailApi.as_view(), name="api-network-detail"),
]
