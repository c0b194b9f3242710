from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from datasets import selectors as dataset_selectors
from networks import selectors, services
from networks.errors import NetworkInputError
from networks.forms import NetworkForm
from networks.spec import SpecError
from workbench.pagination import page_context


def network_list(request: HttpRequest) -> HttpResponse:
    context = page_context(request, selectors.network_list(user=request.user))
    return render(request, "networks/list.html", context | {"networks": context["page"]})


def network_create(request: HttpRequest) -> HttpResponse:
    form = NetworkForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            network = services.network_create(owner=request.user, name=form.cleaned_data["name"],
                                              spec=form.cleaned_data["spec"],
                                              description=form.cleaned_data["description"])
        except NetworkInputError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            return redirect("network-detail", key=network.pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "networks/create.html", {"form": form}, status=status)


def network_detail(request: HttpRequest, key: str) -> HttpResponse:
    entry = selectors.network_get(user=request.user, key=key)
    datasets = dataset_selectors.dataset_list(user=request.user).filter(status="ready")
    raw = request.GET.get("dataset", "")
    dataset = datasets.filter(pk=int(raw)).first() if raw.isdigit() else None
    context = {"entry": entry, "datasets": datasets, "dataset": dataset}
    try:
        context["summary"], context["shape"], context["classes"] = selectors.network_summary(entry=entry,
                                                                                            dataset=dataset)
    except SpecError as exc:
        context["error"] = str(exc)
    return render(request, "networks/detail.html", context)
