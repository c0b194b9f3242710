"""What the job services refuse, with the field or the HTTP status it maps to."""
from __future__ import annotations


class JobInputError(Exception):
    """Bad input from the user, with the form field it belongs to."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class JobStateError(Exception):
    """The action does not fit the job's state (abort a finished job, delete a running one)."""

    http_status = 409  # workbench.api.refusal_response
