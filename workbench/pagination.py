"""The page every API list answers. Its own module: DRF imports DEFAULT_PAGINATION_CLASS while it
defines its generic views, and workbench.api (through drf_spectacular) imports those views."""
from __future__ import annotations

from rest_framework.pagination import PageNumberPagination


class Pagination(PageNumberPagination):
    """Every list: `{count, next, previous, results}`, `?page=N&page_size=M` (50 by default, at most 500).

    A page past the end is DRF's NotFound, so it answers 404 in the project's error shape.
    """

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
