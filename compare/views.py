from __future__ import annotations

from dataclasses import asdict

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from compare import selectors


def compare_page(request: HttpRequest) -> HttpResponse:
    """The curves come from the compare API (static/js/compare.js); the page renders the table of differences."""
    jobs_param, group = request.GET.get("jobs", ""), request.GET.get("group", "")
    context = {"jobs_param": jobs_param, "group": group, "max_jobs": selectors.MAX_JOBS,
               "page_max_points": selectors.PAGE_MAX_POINTS}
    if not jobs_param and not group:
        return render(request, "compare/compare.html", context)
    try:
        ids = selectors.compare_job_ids(user=request.user, jobs=jobs_param, group=group)
        jobs = selectors.compare_jobs(user=request.user, ids=ids)
    except selectors.CompareInputError as exc:
        return render(request, "compare/compare.html", context | {"error": str(exc)}, status=400)
    except selectors.JobsNotFound as exc:
        raise Http404(str(exc)) from None
    charts, table = selectors.compare_charts(jobs=jobs), selectors.compare_settings_table(jobs=jobs)
    keys = selectors.best_keys(charts)
    rows = [(*row, selectors.best_cells(row[0], keys)) for row in table.rows]
    context |= {"jobs": jobs, "ids": ",".join(map(str, ids)), "table": table, "rows": rows, "charts": charts,
                "charts_json": [asdict(chart) for chart in charts],
                "best_labels": [f"Best {chart.title[0].lower()}{chart.title[1:]}" for chart in charts if chart.fraction]
                + ["Best val loss"]}
    return render(request, "compare/compare.html", context)
