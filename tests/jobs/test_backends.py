"""The backend plug-in point: configured by alias, checked at start-up, never loaded by the web."""
from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from tests.conftest import ROOT
from training.backends import BackendHandler


def check_ids() -> set[str]:
    return {message.id for message in run_checks() if message.id and message.id.startswith("jobs.")}


def test_it_reports_a_backend_module_that_does_not_exist():
    with override_settings(TRAINING_BACKENDS={"torch": {"BACKEND": "nowhere.Backend"}}):
        assert "jobs.E003" in check_ids()


def test_it_reports_a_backend_without_a_dotted_path():
    with override_settings(TRAINING_BACKENDS={"torch": {"OPTIONS": {}}}):
        assert "jobs.E002" in check_ids()


def test_it_reports_an_empty_setting_and_a_missing_default():
    with override_settings(TRAINING_BACKENDS={}):
        assert "jobs.E001" in check_ids()
    with override_settings(TRAINING_BACKENDS={"other": {"BACKEND": "training.torch.backend.TorchBackend"}}):
        assert "jobs.E004" in check_ids()


def test_it_passes_the_shipped_configuration():
    assert check_ids() == set()


def test_it_imports_a_backend_once_and_reuses_it():
    handler = BackendHandler()

    first, second = handler["torch"], handler["torch"]

    assert first is second
    assert first.supports_resume and "cpu" in first.devices()


def test_it_never_imports_torch_in_the_web_process_modules():
    code = ("import django, os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'tests.settings'); "
            "django.setup(); import workbench.urls, workbench.asgi, jobs.api, jobs.views, live.events, "
            "jobs.inference, jobs.services, jobs.forms, results.api, results.views, results.batch_views, "
            "results.export_api, results.export_views, results.compress_api, results.compress_views, "
            "results.evaluation, results.batch, results.export, results.compress, results.inspect, "
            "results.templatetags.results_tools, training.torch.backend, training.api, training.vision_tasks, "
            "networks.api, networks.views, networks.services; "
            "from training.backends import backends; assert backends.backend_class('torch').export_formats; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.django_db(transaction=True)
def test_it_keeps_torch_out_of_the_running_web_server(web_server, alice):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=alice).key
    for path in ("/api/v1/networks/", "/api/v1/networks/resnet18/", "/api/v1/jobs/", "/api/v1/datasets/",
                 "/api/v1/schema/"):
        request = urllib.request.Request(web_server + path, headers={"Authorization": f"Token {token}"})
        assert urllib.request.urlopen(request).status == 200
    maps = Path(f"/proc/{web_server.pid}/maps")
    if not maps.exists():
        pytest.skip("no /proc on this system to inspect the server's loaded libraries")
    assert "libtorch" not in maps.read_text()
