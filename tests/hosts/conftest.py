"""A real S3 API in a process (moto's standalone server), and a store on it for the test process."""
from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from workbench import processes
from workbench.storage import S3Store, store

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "workbench-test", "AWS_SECRET_ACCESS_KEY": "workbench-test-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}


def start_s3_server(log: Path, port: int | None = None, **env: str):  # type: ignore[no-untyped-def]
    port = port or processes.free_port()
    proc = processes.start([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], log=log,
                           ready=lambda: processes.listening(port), what="moto S3 server",
                           env={**os.environ, **env})
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The S3 endpoint URL of a moto server started for this session."""
    proc, url = start_s3_server(tmp_path_factory.mktemp("moto") / "moto.log")
    yield url
    processes.stop(proc)


def s3_env(endpoint: str, bucket: str) -> dict[str, str]:
    """What a host needs to use the store: WORKBENCH_STORAGE and the standard AWS variables."""
    return {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint, "WORKBENCH_STORAGE": f"s3://{bucket}/workbench"}


@pytest.fixture
def bucket(s3_server, monkeypatch) -> str:  # type: ignore[no-untyped-def]
    """A new, empty bucket on the session's server (the test process's AWS variables point at it)."""
    for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": s3_server}.items():
        monkeypatch.setenv(name, value)
    name = f"wb-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_store(bucket, settings, tmp_path) -> S3Store:  # type: ignore[no-untyped-def]
    """This process as a host of its own: the store on the bucket, a data folder of its own as its cache."""
    settings.WORKBENCH_STORAGE = f"s3://{bucket}/workbench"
    settings.DATA_DIR = tmp_path / "host"
    settings.DATA_DIR.mkdir()
    current = store()
    assert isinstance(current, S3Store)
    return current


def objects(bucket: str, endpoint: str) -> dict[str, int]:
    """Every object of the bucket: key → size."""
    listing = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=bucket)
    return {item["Key"]: item["Size"] for item in listing.get("Contents", [])}
