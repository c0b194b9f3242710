from __future__ import annotations

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the admin user once, from WORKBENCH_ADMIN_USER / WORKBENCH_ADMIN_PASSWORD or generated."

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        username = os.environ.get("WORKBENCH_ADMIN_USER", "admin")
        password = os.environ.get("WORKBENCH_ADMIN_PASSWORD", "")
        user = User.objects.filter(username=username).first()
        if user is not None:
            if password and not user.check_password(password):
                user.set_password(password)
                user.save(update_fields=["password"])
                self.stdout.write(f"Admin user '{username}': password updated from WORKBENCH_ADMIN_PASSWORD.")
            return
        generated = not password
        password = password or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        if generated:
            # Shown once: it is not stored anywhere in clear.
            self.stdout.write(self.style.WARNING(
                f"Created admin user '{username}' with password: {password}\n"
                "Write it down; it is not shown again (set WORKBENCH_ADMIN_PASSWORD to choose one)."))
        else:
            self.stdout.write(f"Created admin user '{username}' with the password from WORKBENCH_ADMIN_PASSWORD.")
