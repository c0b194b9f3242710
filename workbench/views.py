from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from datasets.selectors import dataset_list
from jobs.selectors import job_list
from jobs.services import jobs_reap_stale


def dashboard(request: HttpRequest) -> HttpResponse:
    jobs_reap_stale()
    context = {"datasets": dataset_list(user=request.user)[:20], "jobs": job_list(user=request.user)[:20]}
    return render(request, "workbench/dashboard.html", context)
