"""Files that are either whole or absent: written under a temporary name, fsynced, renamed.

A process killed mid-write leaves only a `.tmp` file that nothing reads; a reader never sees half
a snapshot or half a model description. Renaming is atomic on one filesystem.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

TEMPORARY_MARK = ".tmp-"


@contextmanager
def replaced_atomically(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is fsynced and renamed onto `path`."""
    temporary = path.with_name(f"{path.name}{TEMPORARY_MARK}{uuid.uuid4().hex[:8]}")
    try:
        yield temporary
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    fsync_folder(path.parent)


def write_together(files: dict[Path, Callable[[Path], None]], before_replace: Callable[[], None] = lambda: None) -> None:
    """Files that are whole or absent together (a snapshot's weights, optimizer and JSON): each
    written by its callable under a temporary name and fsynced, then `before_replace()`, then all
    renamed and their folders fsynced once (not once a file). A failure leaves no temporary behind."""
    temporaries = {path: path.with_name(f"{path.name}{TEMPORARY_MARK}{uuid.uuid4().hex[:8]}") for path in files}
    try:
        for path, write in files.items():
            write(temporaries[path])
            with open(temporaries[path], "rb+") as handle:
                os.fsync(handle.fileno())
        before_replace()
        for path, temporary in temporaries.items():
            os.replace(temporary, path)
    finally:
        for temporary in temporaries.values():
            temporary.unlink(missing_ok=True)
    for folder in {path.parent for path in files}:
        fsync_folder(folder)


def write_bytes_atomically(path: Path, data: bytes) -> None:
    with replaced_atomically(path) as temporary:
        temporary.write_bytes(data)


def fsync_folder(folder: Path) -> None:
    """Make a rename durable: the folder entry itself goes to disk."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some filesystems refuse fsync on a folder; the rename is still atomic
    finally:
        os.close(descriptor)


def remove_leftovers(folder: Path) -> int:
    """Delete what a killed writer left behind; returns how many files."""
    leftovers = list(folder.glob(f"*{TEMPORARY_MARK}*")) if folder.is_dir() else []
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)
    return len(leftovers)
