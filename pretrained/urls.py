from __future__ import annotations

from django.urls import path

from pretrained import api, views

urlpatterns = [
    path("", views.pretrained_list, name="pretrained-list"),
    path("from-job/<int:pk>/", views.pretrained_from_job, name="pretrained-from-job"),
    path("<int:pk>/delete/", views.pretrained_delete, name="pretrained-delete"),
]

api_urlpatterns = [
    path("pretrained/", api.PretrainedListApi.as_view(), name="api-pretrained-list"),
    path("pretrained/compatibility/", api.CompatibilityApi.as_view(), name="api-pretrained-compatibility"),
    path("pretrained/<int:pk>/", api.PretrainedDetailApi.as_view(), name="api-pretrained-detail"),
    path("jobs/<int:pk>/pretrained/", api.PretrainedFromJobApi.as_view(), name="api-job-pretrained"),
]
