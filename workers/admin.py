from __future__ import annotations

from django.contrib import admin

from workers.models import Worker


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ("name", "host", "pid", "concurrency", "seen_at")
    readonly_fields = ("devices",)
