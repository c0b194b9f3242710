from __future__ import annotations

from django.urls import path

from datasets import api, views

urlpatterns = [
    path("", views.dataset_list, name="dataset-list"),
    path("new/", views.dataset_create, name="dataset-create"),
    path("example/", views.dataset_create_example, name="dataset-example"),
    path("<int:pk>/", views.dataset_detail, name="dataset-detail"),
    path("<int:pk>/delete/", views.dataset_delete, name="dataset-delete"),
    path("<int:pk>/mean.png", views.dataset_mean_image, name="dataset-mean"),
    path("<int:pk>/images/<str:split>/<int:index>.png", views.dataset_image, name="dataset-image"),
    path("<int:pk>/masks/<str:split>/<int:index>.png", views.dataset_mask, name="dataset-mask"),
    path("<int:pk>/boxes/<str:split>/<int:index>.png", views.dataset_boxes, name="dataset-boxes"),
    path("<int:pk>/thumbs/<int:class_index>/<int:k>.png", views.dataset_thumbnail, name="dataset-thumb"),
]

api_urlpatterns = [
    path("datasets/", api.DatasetListApi.as_view(), name="api-dataset-list"),
    path("datasets/example/", api.DatasetExampleApi.as_view(), name="api-dataset-example"),
    path("datasets/<int:pk>/", api.DatasetDetailApi.as_view(), name="api-dataset-detail"),
]
