"""Settings come from the environment: a bad value stops the start naming its variable, and every
variable the settings read is in the README's configuration table."""
from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

ROOT = Path(__file__).resolve().parent.parent.parent
SETTINGS = ROOT / "workbench" / "settings.py"


def load_settings(monkeypatch, tmp_path, **env: str) -> dict:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("WORKBENCH_STATIC_ROOT", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS))


@pytest.mark.parametrize(("name", "value"), [
    ("WORKBENCH_GPU_DATA_FRACTION", "half"),
    ("WORKBENCH_GPU_DATA_FRACTION", "1.5"),
    ("WORKBENCH_GPU_DATA_FRACTION", "nan"),
    ("WORKBENCH_HEARTBEAT_SECONDS", "two"),
    ("WORKBENCH_MAX_ATTEMPTS", "0"),
    ("WORKBENCH_TOKEN_RATE", "lots"),
    ("DEBUG", "maybe"),
    ("LOG_LEVEL", "LOUD"),
    ("WORKBENCH_SERVING_DEVICE", "gpu"),
    ("WORKBENCH_SERVING_TIMEOUT", "0"),
    ("WORKBENCH_SERVING_CACHE_MB", "lots"),
    ("WORKBENCH_SERVING_BATCH_WINDOW_MS", "-1"),
])
def test_it_refuses_to_start_with_a_bad_value_naming_the_variable(monkeypatch, tmp_path, name, value):
    with pytest.raises(ImproperlyConfigured, match=name):
        load_settings(monkeypatch, tmp_path, **{name: value})


def test_it_reads_good_values(monkeypatch, tmp_path):
    loaded = load_settings(monkeypatch, tmp_path, WORKBENCH_GPU_DATA_FRACTION="0.25", LOG_LEVEL="WARNING",
                           WORKBENCH_STATIC_ROOT=str(tmp_path / "collected"))

    assert loaded["WORKBENCH_GPU_DATA_FRACTION"] == 0.25
    assert loaded["LOGGING"]["root"]["level"] == "WARNING"
    assert loaded["STATIC_ROOT"] == tmp_path / "collected"


def test_the_static_root_is_set_in_one_place():
    assert len(re.findall(r"^STATIC_ROOT\s*=", SETTINGS.read_text(), re.MULTILINE)) == 1


# Not settings: Django's own pointer to this module, and what the DDP launcher hands its processes.
NOT_SETTINGS = {"DJANGO_SETTINGS_MODULE", "WORKBENCH_RANK_THREADS", "OMP_NUM_THREADS"}


def test_every_variable_the_code_reads_is_in_the_readme():
    sources = [p for p in ROOT.glob("*/**/*.py") if p.parts[len(ROOT.parts)] not in (".venv", "tests", "bench")]
    pattern = r'(?:env_\w+\(|os\.environ\.get\(|os\.environ\[|getenv\()\s*"([A-Z0-9_]+)"'
    read = {name for path in sources for name in re.findall(pattern, path.read_text())} - NOT_SETTINGS
    section = ROOT.joinpath("README.md").read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", section))

    assert {"WORKBENCH_GPU_DATA_FRACTION", "WORKBENCH_ADMIN_USER", "WORKBENCH_FAULT_PAUSE", "PORT"} <= read
    assert sorted(read - documented) == []


@pytest.mark.parametrize("name", ["PORT", "WORKER_CONCURRENCY"])
def test_make_run_refuses_a_bad_port_or_concurrency_naming_it(monkeypatch, name):
    from workbench.management.commands.serve import Command

    monkeypatch.setenv(name, "many")
    with pytest.raises(ImproperlyConfigured, match=name):
        Command().create_parser("manage.py", "serve")
