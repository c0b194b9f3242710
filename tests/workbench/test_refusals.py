"""One handler turns a service's refusal into the API's error: its status, or a 400 naming its field."""
from __future__ import annotations

from pathlib import Path

from datasets.services import DatasetBusy, DatasetInputError
from jobs.errors import JobInputError, JobStateError
from networks.errors import NetworkInputError
from pretrained.services import IncompatibleWeights
from results.work import WorkFailed
from serving.client import ServingUnavailable
from workbench.api import exception_handler

ROOT = Path(__file__).resolve().parent.parent.parent


def answer(exc: Exception) -> tuple[int, dict]:  # type: ignore[type-arg]
    response = exception_handler(exc, {})
    assert response is not None
    return response.status_code, response.data


def test_a_refusal_that_names_a_field_is_a_400_naming_it():
    for error in (JobInputError, DatasetInputError, NetworkInputError):
        assert answer(error("Must be between 1 and 10000.", "epochs")) == (
            400, {"error": "Must be between 1 and 10000.", "detail": {"epochs": ["Must be between 1 and 10000."]}})


def test_a_refusal_of_the_request_as_a_whole_is_a_non_field_error():
    assert answer(JobInputError("Nothing to do.")) == (
        400, {"error": "Nothing to do.", "detail": {"non_field_errors": ["Nothing to do."]}})


def test_a_fine_tune_that_would_copy_nothing_carries_its_report():
    status, body = answer(IncompatibleWeights("Nothing fits.", "pretrained", {"counts": {"copied": 0}}))

    assert status == 400 and body["detail"] == {"pretrained": ["Nothing fits."], "report": {"counts": {"copied": 0}}}


def test_a_refusal_with_a_status_answers_with_it():
    assert answer(JobStateError("The job is running.")) == (409, {"error": "The job is running.", "detail": {}})
    assert answer(DatasetBusy("A job uses it."))[0] == 409
    assert answer(WorkFailed("The snapshot is gone."))[0] == 409
    assert answer(ServingUnavailable("No worker answered.", 504))[0] == 504


def test_any_other_exception_is_left_to_the_server_error_page():
    assert exception_handler(RuntimeError("bug"), {}) is None


def test_no_api_module_maps_a_refusal_by_hand():
    modules = [p for p in ROOT.glob("*/*api.py") if ".venv" not in p.parts]
    assert len(modules) >= 10
    for module in modules:
        text = module.read_text()
        assert "refused(" not in text and "except JobInputError" not in text and "except JobStateError" not in text, module
