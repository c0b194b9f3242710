from __future__ import annotations

from django.urls import path

from sweeps import api, views

urlpatterns = [
    path("", views.sweep_list, name="sweep-list"),
    path("new/", views.sweep_create, name="sweep-create"),
    path("<int:pk>/", views.sweep_detail, name="sweep-detail"),
    path("<int:pk>/abort/", views.sweep_abort, name="sweep-abort"),
    path("<int:pk>/train-best/", views.sweep_train_best, name="sweep-train-best"),
]

api_urlpatterns = [
    path("sweeps/", api.SweepListApi.as_view(), name="api-sweep-list"),
    path("sweeps/<int:pk>/", api.SweepDetailApi.as_view(), name="api-sweep-detail"),
    path("sweeps/<int:pk>/abort/", api.SweepAbortApi.as_view(), name="api-sweep-abort"),
    path("sweeps/<int:pk>/train-best/", api.SweepTrainBestApi.as_view(), name="api-sweep-train-best"),
]
