from __future__ import annotations

from django.contrib import admin

from sweeps.models import Sweep, Trial


@admin.register(Sweep)
class SweepAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "owner", "status", "trials_total", "created_at"]
    list_filter = ["status"]


@admin.register(Trial)
class TrialAdmin(admin.ModelAdmin):
    list_display = ["id", "sweep", "number", "job", "told"]
