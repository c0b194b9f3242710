from __future__ import annotations

import importlib.util
from pathlib import Path

from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage

PLOTLY_PATH = "vendor/plotly.min.js"


def _plotly_dir() -> Path | None:
    # find_spec does not import plotly: the web process only needs its bundled JavaScript.
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "package_data"


class PlotlyFinder(BaseFinder):
    """Serves plotly.js from the installed plotly package, so pages never need a CDN."""

    def check(self, **kwargs):  # type: ignore[no-untyped-def]
        return []

    def find(self, path: str, find_all: bool = False, **kwargs):  # type: ignore[no-untyped-def]
        folder = _plotly_dir()
        if path != PLOTLY_PATH or folder is None:
            return [] if find_all else None
        found = str(folder / "plotly.min.js")
        return [found] if find_all else found

    def list(self, ignore_patterns):  # type: ignore[no-untyped-def]
        folder = _plotly_dir()
        if folder is not None:
            yield "plotly.min.js", _PrefixedStorage(str(folder))


class _PrefixedStorage(FileSystemStorage):
    prefix = "vendor"
