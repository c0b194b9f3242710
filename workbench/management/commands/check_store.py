"""`manage.py check_store`: exit 2 with the reason when this host cannot use WORKBENCH_STORAGE (compose's web runs it first)."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from workbench.processes import store_checked
from workbench.storage import store


class Command(BaseCommand):
    help = "Check that the store (WORKBENCH_STORAGE) answers: the endpoint, the bucket and the credentials."

    def handle(self, *args: Any, **options: Any) -> None:
        store_checked()
        self.stdout.write(f"store: {store().description} answers")
