from __future__ import annotations

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from compare.urls import api_urlpatterns as compare_api
from datasets.urls import api_urlpatterns as dataset_api
from jobs.urls import api_urlpatterns as job_api
from live.urls import api_urlpatterns as live_api
from networks.urls import api_urlpatterns as network_api
from pretrained.urls import api_urlpatterns as pretrained_api
from results.urls import api_urlpatterns as result_api
from sweeps.urls import api_urlpatterns as sweep_api
from training.urls import api_urlpatterns as training_api
from workbench import views
from workbench.api import HealthApi, TokenApi, api_not_found
from workers.urls import api_urlpatterns as workers_api

api_v1 = [
    path("health/", HealthApi.as_view(), name="api-health"),
    path("auth/token/", TokenApi.as_view(), name="api-token"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    *dataset_api,
    *live_api,
    *job_api,
    *network_api,
    *training_api,
    *result_api,
    *compare_api,
    *workers_api,
    *sweep_api,
    *pretrained_api,
    re_path(r"^.*$", api_not_found),
]

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("datasets/", include("datasets.urls")),
    path("jobs/", include("jobs.urls")),
    path("jobs/", include("results.urls")),
    path("networks/", include("networks.urls")),
    path("compare/", include("compare.urls")),
    path("workers/", include("workers.urls")),
    path("sweeps/", include("sweeps.urls")),
    path("pretrained/", include("pretrained.urls")),
    path("api/v1/", include(api_v1)),
]

handler500 = "workbench.api.server_error"
