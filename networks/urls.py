from __future__ import annotations

from django.urls import path

from networks import api, views

urlpatterns = [
    path("", views.network_list, name="network-list"),
    path("new/", views.network_create, name="network-create"),
    path("<str:key>/", views.network_detail, name="network-detail"),
]

api_urlpatterns = [
    path("networks/", api.NetworkListApi.as_view(), name="api-network-list"),
    path("networks/<str:key>/", api.NetworkDetailApi.as_view(), name="api-network-detail"),
]
