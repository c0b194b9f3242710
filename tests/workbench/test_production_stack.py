"""The production stack (PostgreSQL + Redis) when the run points at it; skipped otherwise.

    DATABASE_URL=postgres://root@127.0.0.1:5432/root CELERY_BROKER_URL=redis://127.0.0.1:6379/15 \\
        .venv/bin/python -m pytest tests/workbench/test_production_stack.py
"""
from __future__ import annotations

import io
import os

import pytest
from django.conf import settings
from django.db import connection

from tests.conftest import class_images, wait_dataset, zip_bytes

ON_POSTGRES = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://", "pgsql://"))
ON_REDIS = os.environ.get("CELERY_BROKER_URL", "").startswith(("redis://", "rediss://"))

needs_postgres = pytest.mark.skipif(not ON_POSTGRES, reason="DATABASE_URL does not point to PostgreSQL")
needs_redis = pytest.mark.skipif(not ON_REDIS, reason="CELERY_BROKER_URL does not point to Redis")


@needs_postgres
@pytest.mark.django_db
def test_it_runs_on_postgresql():
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("select version()")
        assert cursor.fetchone()[0].startswith("PostgreSQL")


@needs_redis
def test_it_sends_tasks_through_redis_with_a_long_visibility_timeout():
    from workbench.celery import app

    with app.connection_for_write() as conn:
        assert conn.transport.driver_type == "redis"
    # A job that outlives the visibility timeout would be delivered twice.
    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] > settings.CELERY_TASK_TIME_LIMIT


@needs_redis
@pytest.mark.django_db(transaction=True)
def test_it_ingests_an_upload_on_a_worker_over_redis(celery_worker, alice_api):
    archive = io.BytesIO(zip_bytes(class_images(6, ("red", "blue"))))
    archive.name = "colours.zip"
    response = alice_api.post("/api/v1/datasets/", {
        "name": "Colours over Redis", "archive": archive, "image_width": 12, "image_height": 10,
        "channels": 3, "val_percent": 20, "test_percent": 0, "seed": 3}, format="multipart")
    assert response.status_code == 201, response.json()

    dataset = wait_dataset(response.json()["id"])

    assert dataset.status == "ready", dataset.error
    assert dataset.classes == ["blue", "red"]
    assert sum(dataset.split_counts.values()) == 12
