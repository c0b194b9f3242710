from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from workers import selectors


def worker_list(request: HttpRequest) -> HttpResponse:
    views = selectors.worker_list(user=request.user, include_stopped=True)
    return render(request, "workers/list.html", {"workers": views, "silent_after": selectors.worker_silent_after(),
                                                 "hidden_model": selectors.HIDDEN_MODEL})
