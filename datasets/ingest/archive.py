"""Safe extraction of zip and tar archives, member by member.

Rejected outright: absolute paths, `..`, links, devices, and archives over the member-count,
size or compression-ratio caps. Only image files are written, and only under `dest`.
"""
from __future__ import annotations

import io
import os
import re
import stat
import tarfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from datasets.ingest import IngestError
from datasets.ingest.images import ImageRejected

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})
_TEXT_SUFFIXES = frozenset({".txt", ".xml", ".json", ".yaml", ".yml"})
_DRIVE = re.compile(r"^[A-Za-z]:")
_CHUNK = 1024 * 1024
# Ratios are only meaningful once enough bytes are in play; tiny files compress wildly.
_RATIO_FLOOR_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ExtractLimits:
    max_members: int
    max_bytes: int
    max_ratio: int


@dataclass
class ExtractReport:
    images: int = 0
    ignored: int = 0
    bytes_written: int = 0


def archive_kind(path: Path) -> str | None:
    """'zip', 'tar' or None, judged by content, not by the file name."""
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        with tarfile.open(path, "r:*") as archive:
            archive.next()
        return "tar"
    except (tarfile.TarError, OSError, EOFError):
        return None


def is_image_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS


def safe_parts(name: str) -> tuple[str, ...]:
    """The member's path components, or IngestError if it could land outside the folder."""
    unified = name.replace("\\", "/")
    if unified.startswith("/") or _DRIVE.match(unified) or "\x00" in unified:
        raise IngestError(f"The archive member '{name}' has an absolute path; archives must hold relative paths only.")
    parts = tuple(p for p in unified.split("/") if p not in ("", "."))
    if ".." in parts:
        raise IngestError(f"The archive member '{name}' points outside its folder ('..'); the archive was rejected.")
    return parts


def _is_hidden(parts: tuple[str, ...]) -> bool:
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


class _Extractor:
    def __init__(self, dest: Path, archive_bytes: int, limits: ExtractLimits,
                 keep_names: frozenset[str] = frozenset(), keep_suffixes: frozenset[str] = frozenset()) -> None:
        self.dest = dest.resolve()
        self.keep_names = keep_names
        self.keep_suffixes = keep_suffixes
        self.archive_bytes = max(archive_bytes, 1)
        self.limits = limits
        self.report = ExtractReport()
        self.members = 0

    def count_member(self) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise IngestError(
                f"The archive has more than {self.limits.max_members:,} members, over the limit."
            )

    def wants(self, name: str) -> tuple[str, ...] | None:
        parts = safe_parts(name)
        kept = bool(parts) and (is_image_name(parts[-1]) or parts[-1].lower() in self.keep_names
                                or PurePosixPath(parts[-1]).suffix.lower() in self.keep_suffixes)
        if not parts or _is_hidden(parts) or not kept:
            self.report.ignored += bool(parts)
            if parts and not _is_hidden(parts):
                self.keep_folder(parts[:-1])
            return None
        return parts

    def keep_folder(self, parts: tuple[str, ...]) -> None:
        """Recreate a folder even when none of its files are kept, so a class without images
        is reported by name instead of vanishing from the dataset."""
        folder = self.dest.joinpath(*parts)
        if parts and folder.resolve().is_relative_to(self.dest):
            folder.mkdir(parents=True, exist_ok=True)

    def write(self, parts: tuple[str, ...], source: IO[bytes], declared: int) -> None:
        target = self.dest.joinpath(*parts)
        if not target.resolve().is_relative_to(self.dest):
            raise IngestError(f"The archive member '{'/'.join(parts)}' points outside its folder.")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(_CHUNK):
                self._account(len(chunk))
                out.write(chunk)
        self.report.images += is_image_name(parts[-1])

    def _account(self, n: int) -> None:
        self.report.bytes_written += n
        written = self.report.bytes_written
        if written > self.limits.max_bytes:
            raise IngestError(
                f"The archive expands to more than {self.limits.max_bytes / 1024**2:,.0f} MiB, over the limit."
            )
        if written > _RATIO_FLOOR_BYTES and written / self.archive_bytes > self.limits.max_ratio:
            raise IngestError(
                f"The archive expands more than {self.limits.max_ratio}x its size; "
                "it looks like a compression bomb and was rejected."
            )


def extract_archive(
    path: Path, dest: Path, limits: ExtractLimits, progress: Callable[[float], None] = lambda f: None,
    keep_names: frozenset[str] = frozenset(), keep_suffixes: frozenset[str] = frozenset(),
) -> ExtractReport:
    """Extract the image files (and files named in `keep_names`, e.g. a segmentation archive's
    classes.txt, or ending in `keep_suffixes`, e.g. a detection archive's label files) of a zip or
    tar under `dest`."""
    kind = archive_kind(path)
    if kind is None:
        raise IngestError("The file is not a zip or tar archive (tar, tar.gz, tgz, tar.bz2, tar.xz).")
    dest.mkdir(parents=True, exist_ok=True)
    extractor = _Extractor(dest, path.stat().st_size, limits, keep_names, keep_suffixes)
    if kind == "zip":
        _extract_zip(path, extractor, progress)
    else:
        _extract_tar(path, extractor, progress)
    return extractor.report


class ZipSource:
    """A zip read in place: every member is checked up front as extraction would check it, and
    nothing is written to disk. Decode threads each get their own handle on the file."""

    def __init__(self, path: Path, limits: ExtractLimits) -> None:
        self.path = path
        self.names, self.dirs, self.images = _check_zip(path, limits)
        self._local = threading.local()
        self._handles: list[zipfile.ZipFile] = []
        self._lock = threading.Lock()

    def open(self, name: str) -> IO[bytes]:
        archive = getattr(self._local, "archive", None)
        if archive is None:
            archive = self._local.archive = zipfile.ZipFile(self.path)
            with self._lock:
                self._handles.append(archive)
        try:
            # zipfile stops at the declared size and checks the CRC: a lying header fails here.
            return io.BytesIO(archive.read(name))
        except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError) as exc:
            raise ImageRejected("unreadable", f"the archive member could not be read: {exc}") from None

    def close(self) -> None:
        with self._lock:
            for handle in self._handles:
                handle.close()
            self._handles.clear()


def _check_zip(path: Path, limits: ExtractLimits) -> tuple[list[str], list[str], int]:
    """(file names, folder names, image count) of a zip whose every member passed the checks."""
    if not zipfile.is_zipfile(path):
        raise IngestError("The file is not a zip archive.")
    checker = _Extractor(path.parent / ".never-written", path.stat().st_size, limits)
    names, dirs = [], []
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                checker.count_member()
                if _zip_is_link(info):
                    raise IngestError(f"The archive member '{info.filename}' is a link; links are not allowed.")
                parts = safe_parts(info.filename)
                if not parts:
                    continue
                (dirs if info.is_dir() else names).append("/".join(parts))
                if not info.is_dir() and not _is_hidden(parts) and is_image_name(parts[-1]):
                    _check_ratio(info, limits)
                    checker._account(info.file_size)
                    checker.report.images += 1
                elif not info.is_dir() and not _is_hidden(parts) and PurePosixPath(parts[-1]).suffix.lower() in _TEXT_SUFFIXES:
                    # Label and side files are read from the zip too (detection): the same caps hold.
                    _check_ratio(info, limits)
                    checker._account(info.file_size)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        raise IngestError(f"The zip archive could not be read: {exc}") from None
    return names, dirs, checker.report.images


def _check_ratio(info: zipfile.ZipInfo, limits: ExtractLimits) -> None:
    if info.file_size > _RATIO_FLOOR_BYTES and info.file_size / max(info.compress_size, 1) > limits.max_ratio:
        raise IngestError(
            f"The archive member '{info.filename}' expands more than {limits.max_ratio}x; "
            "it looks like a compression bomb and was rejected."
        )


def _zip_is_link(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return stat.S_ISLNK(mode)


def _extract_zip(path: Path, ex: _Extractor, progress: Callable[[float], None]) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            for done, info in enumerate(infos, 1):
                _extract_zip_member(archive, info, ex)
                if done % 200 == 0:
                    progress(done / len(infos))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        raise IngestError(f"The zip archive could not be read: {exc}") from None


def _extract_zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, ex: _Extractor) -> None:
    ex.count_member()
    if _zip_is_link(info):
        raise IngestError(f"The archive member '{info.filename}' is a link; links are not allowed.")
    if info.is_dir():
        parts = safe_parts(info.filename)
        if not _is_hidden(parts):
            ex.keep_folder(parts)
        return
    parts = ex.wants(info.filename)
    if parts is None:
        return
    _check_ratio(info, ex.limits)
    with archive.open(info) as source:
        ex.write(parts, source, info.file_size)


def _tar_members(archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while (member := archive.next()) is not None:
        yield member


def _extract_tar(path: Path, ex: _Extractor, progress: Callable[[float], None]) -> None:
    try:
        with open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r:*") as archive:
            for member in _tar_members(archive):
                _extract_tar_member(archive, member, ex)
                if ex.members % 200 == 0:
                    # The compressed file's read position is the honest measure of work done.
                    progress(min(raw.tell() / ex.archive_bytes, 1.0))
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise IngestError(f"The tar archive could not be read: {exc}") from None


def _extract_tar_member(archive: tarfile.TarFile, member: tarfile.TarInfo, ex: _Extractor) -> None:
    ex.count_member()
    if member.issym() or member.islnk():
        raise IngestError(f"The archive member '{member.name}' is a link; links are not allowed.")
    if member.isdir():
        parts = safe_parts(member.name)
        if not _is_hidden(parts):
            ex.keep_folder(parts)
        return
    if not member.isfile():
        raise IngestError(f"The archive member '{member.name}' is a device or pipe; only files are allowed.")
    parts = ex.wants(member.name)
    if parts is None:
        return
    source = archive.extractfile(member)
    if source is not None:
        ex.write(parts, source, member.size)
