from __future__ import annotations

from django.urls import path

from live import events

api_urlpatterns = [
    path("jobs/<int:pk>/events/", events.job_events, name="api-job-events"),
]
