from __future__ import annotations

from django.contrib import admin

from datasets.models import Dataset


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "owner", "status", "progress", "created_at"]
    list_filter = ["status", "source"]
    search_fields = ["name", "owner__username"]
    readonly_fields = ["classes", "split_counts", "class_counts", "skipped", "warnings"]
