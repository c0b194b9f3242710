"""The pages lists answer: every API list (DRF) and every HTML list (page_context).

The page every API list answers. Its own module: DRF imports DEFAULT_PAGINATION_CLASS while it
defines its generic views, and workbench.api (through drf_spectacular) imports those views."""
from __future__ import annotations

from typing import Any

from django.core.paginator import Paginator
from django.http import HttpRequest
from rest_framework.pagination import PageNumberPagination


class Pagination(PageNumberPagination):
    """Every list: `{count, next, previous, results}`, `?page=N&page_size=M` (50 by default, at most 500).

    A page past the end is DRF's NotFound, so it answers 404 in the project's error shape.
    """

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


def page_context(request: HttpRequest, items: Any, per_page: int = 50) -> dict[str, Any]:
    """One page of an HTML list, its page links, and the other query parameters those links keep."""
    page = Paginator(items, per_page).get_page(request.GET.get("page"))
    others = request.GET.copy()
    others.pop("page", None)
    return {"page": page, "others": others.urlencode(),
            "page_range": page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1)}
