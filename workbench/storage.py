"""Where the files of datasets, jobs and pretrained models live: the data folder, or an S3 store.

Every file keeps one name on every host: its path relative to the data folder (`datasets/3/train_images.npy`,
`jobs/7/snapshots/epoch_2.safetensors`). Code reads and writes the data folder as it always did and
says where the store comes in:

- `store().publish(path, ...)` after a file is whole (a snapshot, an ingest's arrays, an export);
- `store().fetch(path)` / `fetch_folder(folder)` before reading one that another host may have written;
- `store().stream(path)` / `download_url(path, name)` to hand a file to a browser or a script;
- `store().delete_folder(folder)` when its row is deleted.

`WORKBENCH_STORAGE=local` (the default): the data folder is the store, every call above costs nothing
and hosts must share that folder. `s3://bucket/prefix`: the store is S3 or any S3-compatible server,
reached through django-storages' S3 backend and boto3 (credentials and endpoint from the standard
AWS variables); each host's data folder is then a cache of it, bounded by WORKBENCH_CACHE_BYTES
(`workbench.cache`), and hosts share no disk.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from workbench.files import TEMPORARY_MARK, fsync_folder

log = logging.getLogger(__name__)

T = TypeVar("T")
CHUNK = 1024 * 1024  # bytes a streamed download hands out at a time
SMALL_FILE = 16 * 1024**2  # uploaded in one PUT below this (the multipart threshold of _transfer_config)


class StoreUnavailable(Exception):
    """The store did not answer (or refused) a transfer; the caller waits and tries again."""

    http_status = 503  # an API request that needed the store (an upload) is answered so, saying why


class Store:
    """The data folder itself (`WORKBENCH_STORAGE=local`): every file is where the store would put it."""

    remote = False
    description = "the data folder"

    def key(self, path: Path) -> str:
        """The file's name in the store: its path relative to the data folder."""
        return data_name(path)

    def publish(self, *paths: Path) -> None:
        """Put whole local files into the store under their names."""

    def publish_folder(self, folder: Path) -> None:
        """Put every whole file under `folder` into the store (not temporaries, not cache marks)."""

    def fetch(self, path: Path) -> Path:
        """The file, local; fetched from the store when this host does not have it yet."""
        return Path(path)

    def fetch_folder(self, folder: Path) -> Path:
        """Every file the store holds under `folder`, local (those this host has are not fetched again)."""
        return Path(folder)

    def exists(self, path: Path) -> bool:
        return Path(path).exists()

    def stream(self, path: Path) -> Iterator[bytes]:
        """The file's bytes in chunks, for a download; FileNotFoundError when it is in no store."""
        return self.opened(path)[1]

    def opened(self, path: Path) -> tuple[int, Iterator[bytes]]:
        """The file's size and its bytes in chunks, from one open (one request to a remote store)."""
        handle = Path(path).open("rb")  # raises here, not at the first chunk

        def chunks() -> Iterator[bytes]:
            with handle:
                while block := handle.read(CHUNK):
                    yield block

        return os.fstat(handle.fileno()).st_size, chunks()

    def download_url(self, path: Path, filename: str) -> str | None:
        """A URL the client may fetch the file from directly (a presigned one); None: stream it."""
        return None

    def delete(self, path: Path) -> None:
        Path(path).unlink(missing_ok=True)

    def delete_folder(self, folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)

    def check(self) -> None:
        """Raise ImproperlyConfigured, saying what is wrong, when the store cannot be used."""


class S3Store(Store):
    """An S3 bucket (AWS, MinIO, GCS's S3 API, ...) under a prefix, through django-storages' S3Storage."""

    remote = True

    def __init__(self, bucket: str, prefix: str, *, presigned: bool = False, presign_seconds: int = 3600) -> None:
        self.bucket_name, self.prefix = bucket, prefix.strip("/")
        self.presigned, self.presign_seconds = presigned, presign_seconds
        self.description = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"

    @property
    def storage(self) -> Any:
        """django-storages' S3Storage: one per process, its boto3 session and connection kept."""
        return _s3_storage(self.bucket_name, self.prefix)

    def object(self, path: Path) -> Any:
        return self.storage.bucket.Object(self.storage._normalize_name(self.key(path)))

    def publish(self, *paths: Path) -> None:
        for path in paths:
            with _transfer("upload", path):
                obj = self.object(path)
                if path.stat().st_size < SMALL_FILE:  # one PUT: no transfer manager, no threads to start
                    with path.open("rb") as body:
                        obj.put(Body=body)
                else:  # multipart, parts in parallel, streamed from the disk
                    obj.upload_file(str(path), Config=_transfer_config())

    def publish_folder(self, folder: Path) -> None:
        from workbench import cache

        files = [p for p in sorted(Path(folder).rglob("*"))
                 if p.is_file() and TEMPORARY_MARK not in p.name and not cache.is_mark(p)]
        self.publish(*files)

    def fetch(self, path: Path) -> Path:
        from workbench import cache

        path = Path(path)
        if not path.exists():
            with cache.filling(path):
                if not path.exists():  # another process of this host may have fetched it meanwhile
                    self._download(path, self.object(path))
        cache.used(path)
        return path

    def fetch_folder(self, folder: Path) -> Path:
        from workbench import cache

        folder = Path(folder)
        if cache.whole(folder):
            cache.used(folder)
            return folder
        with cache.filling(folder):
            fetched = set()
            for relative, summary in self.listing(folder).items():
                path = folder / relative
                if not (path.exists() and path.stat().st_size == summary.size):
                    self._download(path, summary.Object(), summary.size, sync=False)
                    fetched.add(path.parent)
            for parent in fetched:  # the renames made durable once a folder, not once a file
                fsync_folder(parent)
            cache.mark_whole(folder)
        cache.used(folder)
        return folder

    def listing(self, folder: Path) -> dict[str, Any]:
        """Every object the store holds under `folder`: its path relative to the folder → its summary (.size)."""
        prefix = self._prefix(folder)
        with _transfer("list", folder):
            return {summary.key[len(prefix):]: summary for summary in self.storage.bucket.objects.filter(Prefix=prefix)}

    def _prefix(self, folder: Path) -> str:
        return self.storage._normalize_name(self.key(folder)) + "/"

    def _download(self, path: Path, obj: Any, size: int | None = None, *, sync: bool = True) -> None:
        """Into a temporary name, then renamed: a reader never sees half a file. A small one (its size
        known from a listing) in one GET; others through boto3's transfer manager, in parallel parts."""
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.name}{TEMPORARY_MARK}{uuid.uuid4().hex[:8]}")
        try:
            with _transfer("download", path):
                if size is not None and size < SMALL_FILE:
                    with temporary.open("wb") as out:
                        shutil.copyfileobj(obj.get()["Body"], out, CHUNK)
                else:
                    obj.download_file(str(temporary), Config=_transfer_config())
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        if sync:
            fsync_folder(path.parent)

    def exists(self, path: Path) -> bool:
        return Path(path).exists() or self.storage.exists(self.key(path))

    def opened(self, path: Path) -> tuple[int, Iterator[bytes]]:
        with _transfer("download", path):  # no such key: FileNotFoundError; any other failure: StoreUnavailable
            answer = self.object(path).get()
        return answer["ContentLength"], answer["Body"].iter_chunks(CHUNK)

    def download_url(self, path: Path, filename: str) -> str | None:
        if not self.presigned:
            return None
        disposition = f'attachment; filename="{filename}"'
        return self.storage.url(self.key(path), parameters={"ResponseContentDisposition": disposition},
                                expire=self.presign_seconds)

    def delete(self, path: Path) -> None:
        Path(path).unlink(missing_ok=True)
        with _transfer("delete", path):
            self.object(path).delete()

    def delete_folder(self, folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        prefix = self._prefix(folder)
        try:
            self.storage.bucket.objects.filter(Prefix=prefix).delete()
        except Exception:  # the row is gone already: what is left in the store is garbage, not a failure
            log.warning("could not delete %s from %s", prefix, self.description, exc_info=True)

    def check(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        endpoint = os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"
        where = f"WORKBENCH_STORAGE={self.description} (endpoint {endpoint})"
        try:
            self.storage.connection.meta.client.head_bucket(Bucket=self.bucket_name)
        except NoCredentialsError as exc:
            raise ImproperlyConfigured(f"{where}: no credentials; set AWS_ACCESS_KEY_ID and "
                                       "AWS_SECRET_ACCESS_KEY.") from exc
        except ClientError as exc:
            code = _code(exc)
            if code in ("404", "NoSuchBucket"):
                message = f"the bucket {self.bucket_name!r} does not exist; create it first"
            elif code in ("403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"):
                message = ("the store refused the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) "
                           f"for the bucket {self.bucket_name!r}")
            else:
                message = f"the store answered {code}: {exc}"
            raise ImproperlyConfigured(f"{where}: {message}.") from exc
        except (BotoCoreError, ValueError) as exc:
            raise ImproperlyConfigured(f"{where}: the store cannot be reached ({exc}). Check AWS_ENDPOINT_URL "
                                       "and that the server is up.") from exc


def retrying(action: Callable[[], T], *, seconds: float | None = None, said: Callable[[str], None] = log.warning,
             stop: Callable[[], bool] = lambda: False) -> T:
    """`action()`, tried again with backoff while the store is unavailable, for up to `seconds`
    (WORKBENCH_STORE_RETRY_SECONDS); `said` hears once why it waits, and once that it goes on.
    Raises the last StoreUnavailable when the time is up or `stop()` says so."""
    limit = settings.WORKBENCH_STORE_RETRY_SECONDS if seconds is None else seconds
    since: float | None = None
    while True:
        try:
            result = action()
        except StoreUnavailable as exc:
            now = time.monotonic()
            if since is None:
                since = now
                said(f"Waiting for the store: {exc}. Retrying for up to {limit:g} s.")
            if now - since >= limit or stop():
                raise
            time.sleep(min(0.5 * 2 ** int(now - since), 5.0))
            continue
        if since is not None:
            said("The store answers again; going on.")
        return result


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class _transfer:
    """Any failure of a transfer as StoreUnavailable, naming the file."""

    def __init__(self, action: str, path: Path) -> None:
        self.action, self.path = action, path

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, ClientError) and _code(exc) in ("NoSuchKey", "404"):
            raise FileNotFoundError(f"{self.path} is in no store ({settings.WORKBENCH_STORAGE})") from exc
        if isinstance(exc, (BotoCoreError, ClientError, Boto3Error)):
            raise StoreUnavailable(f"could not {self.action} {Path(self.path).name} "
                                   f"({settings.WORKBENCH_STORAGE}: {exc})") from exc
        return False


@cache
def _transfer_config() -> Any:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=16 * 1024**2, multipart_chunksize=16 * 1024**2, max_concurrency=8)


@cache
def _s3_storage(bucket: str, prefix: str) -> Any:
    from botocore.config import Config
    from storages.backends.s3 import S3Storage

    return S3Storage(bucket_name=bucket, location=prefix, file_overwrite=True, default_acl=None,
                     endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
                     region_name=os.environ.get("AWS_DEFAULT_REGION") or None,
                     client_config=Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3}))


MODEL_FILES = ("model.json", "mean.safetensors")


def model_files(weights: Path) -> Path:
    """A snapshot's or compressed model's weights with the files read beside them (model.json and
    mean.safetensors: beside a compressed model, one folder above a snapshot), on this host."""
    weights = Path(weights)
    if not weights.is_absolute():  # a name another host sent (data_name): this host's copy of it
        weights = data_dir() / weights
    current = store()
    if not current.remote:
        return weights
    current.fetch(weights)
    for name in MODEL_FILES:
        if not ((weights.parent / name).exists() or (weights.parent.parent / name).exists()):
            folder = weights.parent if current.exists(weights.parent / name) else weights.parent.parent
            current.fetch(folder / name)
    return weights


def parse(value: str, *, presigned: bool = False) -> Store:
    """`local` or `s3://bucket/prefix` (WORKBENCH_STORAGE) as a store; ImproperlyConfigured otherwise."""
    value = value.strip()
    if value in ("", "local"):
        return Store()
    if value.startswith("s3://"):
        bucket, _, prefix = value[len("s3://"):].partition("/")
        if bucket:
            return S3Store(bucket, prefix, presigned=presigned)
    raise ImproperlyConfigured(f"WORKBENCH_STORAGE must be `local` or `s3://bucket/prefix`, not {value!r}.")


def data_name(path: Path) -> str:
    """The name of a file under the data folder that every host reads the same: relative to its data folder.
    What one process tells another on another host (a serving request names the snapshot so)."""
    return PurePosixPath(Path(path).resolve().relative_to(data_dir())).as_posix()


def data_dir() -> Path:
    return Path(settings.DATA_DIR).resolve()


_store: Store | None = None


def store() -> Store:
    """The configured store (settings.WORKBENCH_STORAGE), one per process."""
    global _store
    if _store is None or getattr(_store, "_setting", None) != settings.WORKBENCH_STORAGE:
        _store = parse(settings.WORKBENCH_STORAGE, presigned=settings.WORKBENCH_STORAGE_PRESIGNED)
        _store._setting = settings.WORKBENCH_STORAGE  # type: ignore[attr-defined]
    return _store


def check_store() -> None:
    """At start (`serve`, `worker`): fail with the reason when the store cannot be used, not at the first job."""
    store().check()
