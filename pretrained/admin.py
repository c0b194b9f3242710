from __future__ import annotations

from django.contrib import admin

from pretrained.models import PretrainedModel


@admin.register(PretrainedModel)
class PretrainedModelAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "network", "source", "created_at")
    list_filter = ("source",)
