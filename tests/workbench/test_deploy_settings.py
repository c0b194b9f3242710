"""Production settings pass `manage.py check --deploy`; the compose file describes the stack."""
from __future__ import annotations

import os
import secrets
import shutil
import string
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
COMPOSE = ROOT / "docker-compose.yml"


def production_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WORKBENCH_", "DJANGO_"))}
    alphabet = string.ascii_letters + string.digits + "!@#%^&*(-_=+)"
    env.update(
        DJANGO_SETTINGS_MODULE="workbench.settings", WORKBENCH_DATA_DIR=str(data_dir),
        DEBUG="0", SECRET_KEY="".join(secrets.choice(alphabet) for _ in range(50)),
        WORKBENCH_REQUIRE_SECRET_KEY="1", SESSION_COOKIE_SECURE="1", CSRF_COOKIE_SECURE="1",
        SECURE_SSL_REDIRECT="1", SECURE_HSTS_SECONDS="31536000", ALLOWED_HOSTS="example.org",
    )
    env.update(overrides)
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


# --- settings -------------------------------------------------------------------------------

def test_it_passes_the_security_deploy_checks_with_production_settings(tmp_path):
    result = manage(production_env(tmp_path), "check", "--deploy", "--tag", "security", "--fail-level", "WARNING")

    assert result.returncode == 0, result.stdout + result.stderr


def test_it_passes_every_deploy_check_with_production_settings(tmp_path):
    """All of them, the OpenAPI schema check of drf-spectacular included."""
    result = manage(production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")

    assert result.returncode == 0, result.stdout + result.stderr


def test_it_refuses_to_start_in_production_without_a_secret_key(tmp_path):
    env = production_env(tmp_path)
    del env["SECRET_KEY"]

    result = manage(env, "check")

    assert result.returncode != 0
    assert "SECRET_KEY must be set in production" in result.stderr
    assert not (tmp_path / ".secret_key").exists(), "no key is made up in production"


# --- docker-compose.yml ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load(COMPOSE.read_text())


WORKBENCH_SERVICES = ("web", "worker", "worker-b", "background", "serving")
WORKER_SERVICES = ("worker", "worker-b", "background", "serving")


def test_it_describes_the_production_stack(compose):
    services = compose["services"]

    assert {"postgres", "redis", "minio", "minio-init", *WORKBENCH_SERVICES} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert all("healthcheck" in services[name] for name in ("postgres", "redis", "minio", "web"))
    assert "8000:8000" in services["web"]["ports"]
    assert "migrate" in " ".join(services["web"]["command"]) and "uvicorn" in " ".join(services["web"]["command"])
    assert " ".join(services["web"]["command"]).index("check_store") < " ".join(services["web"]["command"]).index("migrate")


def test_it_configures_web_and_workers_for_production(compose):
    for name in WORKBENCH_SERVICES:
        env = compose["services"][name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://"), name
        assert env["CELERY_BROKER_URL"] == "redis://redis:6379/0", name
        assert env["WORKBENCH_DATA_DIR"] == "/data", name
        assert env["SECRET_KEY"] == "${SECRET_KEY:?set SECRET_KEY}", name
        assert env["WORKBENCH_REQUIRE_SECRET_KEY"] == "1" and env["DEBUG"] == "0", name


def test_every_service_keeps_its_own_data_folder_and_shares_none(compose):
    mounts: dict[str, list[str]] = {}
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            mounts.setdefault(volume.split(":")[0], []).append(name)

    assert {name: len(users) for name, users in mounts.items() if len(users) > 1} == {}
    assert all(any(v.endswith(":/data") for v in compose["services"][name]["volumes"]) for name in WORKBENCH_SERVICES)
    assert set(mounts) <= set(compose["volumes"]), "named volumes, not folders of the host"


def test_it_runs_minio_and_creates_the_bucket_the_workbench_stores_in(compose):
    services = compose["services"]
    minio, init = services["minio"], services["minio-init"]
    command = " ".join(init["entrypoint"] + init["command"])

    assert minio["image"].startswith("minio/minio") and minio["command"][:2] == ["server", "/data"]
    assert minio["environment"]["MINIO_ROOT_USER"] == "${MINIO_ROOT_USER:-workbench}"
    assert "minio:/data" in minio["volumes"]
    assert init["image"].startswith("minio/mc") and init["depends_on"]["minio"]["condition"] == "service_healthy"
    assert "mc alias set store http://minio:9000" in command and "mc mb --ignore-existing store/workbench" in command
    for name in WORKBENCH_SERVICES:
        env = services[name]["environment"]
        assert env["WORKBENCH_STORAGE"].startswith("s3://workbench/"), name
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000" and env["AWS_DEFAULT_REGION"] == "us-east-1", name
        assert env["AWS_ACCESS_KEY_ID"] == minio["environment"]["MINIO_ROOT_USER"], name
        assert env["AWS_SECRET_ACCESS_KEY"] == minio["environment"]["MINIO_ROOT_PASSWORD"], name
        assert services[name]["depends_on"]["minio-init"] == {"condition": "service_completed_successfully"}, name


def test_every_worker_is_make_worker_with_a_name_of_its_own(compose):
    services = compose["services"]
    names = [services[name]["environment"]["WORKER_NAME"] for name in WORKER_SERVICES]

    assert all(services[name]["command"] == ["python", "manage.py", "worker"] for name in WORKER_SERVICES)
    assert len(set(names)) == len(names)
    assert all(services[name]["depends_on"]["web"] == {"condition": "service_healthy"} for name in WORKER_SERVICES), (
        "the web service migrates; workers start on a migrated database")
    assert not any("WORKER_GPUS" in services[name]["environment"] for name in WORKER_SERVICES), (
        "a container sees only the GPUs it reserved: WORKER_GPUS is their count there, not their indices")


def test_a_second_worker_stands_for_another_host(compose):
    second, first = compose["services"]["worker-b"], compose["services"]["worker"]

    assert second["environment"]["WORKER_NAME"] == "worker-b"
    assert second["environment"]["WORKER_QUEUES"] == first["environment"]["WORKER_QUEUES"] == "train"
    assert second["volumes"] == ["worker-b-data:/data"]
    assert second["deploy"] == first["deploy"] and second["shm_size"] == first["shm_size"]


def test_it_reserves_a_gpu_for_the_worker(compose):
    worker = compose["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]

    assert devices == [{"driver": "nvidia", "count": "${WORKER_GPUS:-1}", "capabilities": ["gpu"]}]
    assert worker["shm_size"] == "${WORKER_SHM_SIZE:-2gb}"  # NCCL's shared memory for a job on several GPUs
    assert worker["environment"]["WORKER_CONCURRENCY"] == "${WORKER_CONCURRENCY:-2}"


def test_each_kind_of_capacity_has_a_service_that_consumes_its_queue_alone(compose):
    from django.conf import settings

    def queues(service: str) -> set[str]:
        return set(compose["services"][service]["environment"]["WORKER_QUEUES"].split(","))

    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    services = {"train": "worker", "background": "background", "serving": "serving"}

    assert {role: queues(service) for role, service in services.items()} == {
        role: {queue} for role, queue in settings.WORKER_ROLES.items()}
    assert routed == set(settings.WORKER_ROLES.values()), "every routed queue has its service, and no other"


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed; `make system-tools` installs it")
def test_it_is_a_valid_compose_file_that_demands_a_secret_key():
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    config = ["docker-compose", "-f", str(COMPOSE), "config", "-q"]

    valid = subprocess.run(config, env={**env, "SECRET_KEY": "x" * 50}, capture_output=True, text=True, timeout=60)
    missing = subprocess.run(config, env=env, capture_output=True, text=True, timeout=60)

    assert valid.returncode == 0, valid.stderr
    assert missing.returncode != 0 and "set SECRET_KEY" in missing.stderr
