from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from datasets.selectors import dataset_list
from jobs.selectors import job_list


def dashboard(request: HttpRequest) -> HttpResponse:
    context = {"datasets": dataset_list(user=request.user)[:20], "jobs": job_list(user=request.user)[:20]}
    return render(request, "workbench/dashboard.html", context)
