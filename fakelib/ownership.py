"""A record of the files a command wrote in a shared folder, so that it replaces or removes only those.

The tracker writes `best/`, `explain/`, `report.ipynb` and `report.html` into a reports folder that users also
use. Each file it writes is recorded in `<folder>/.fakelib-written.json` with a signature (size and SHA-256, or
a symlink's target); a file that is absent from the record, or changed since, belongs to someone else.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from fakelib.atomic import write_json

RECORD = ".fakelib-written.json"


def signature(path: Path) -> str:
    """What a file was when written: a symlink's target, else its size and SHA-256."""
    if path.is_symlink():
        return "link:" + os.readlink(path)
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"{path.stat().st_size}:{digest.hexdigest()}"


def _files(path: Path) -> Iterable[Path]:
    """`path` itself when it is a file or a link, else every file and link below it."""
    if path.is_symlink() or path.is_file():
        yield path
    elif path.is_dir():
        yield from (item for item in sorted(path.rglob("*")) if item.is_symlink() or not item.is_dir())


class WrittenFiles:
    """The record of one folder: relative path -> signature of each file written there."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        try:
            self.entries: dict[str, str] = dict(json.loads((self.folder / RECORD).read_text())["written"])
        except (OSError, ValueError, KeyError, TypeError):
            self.entries = {}

    def _key(self, path: Path) -> str:
        return path.relative_to(self.folder).as_posix()

    def is_ours(self, path: Path) -> bool:
        """True when `path` was written by us and has not changed since."""
        return self.entries.get(self._key(path)) == signature(path)

    def foreign(self, paths: Iterable[Path]) -> Path | None:
        """The first file under `paths` that we did not write (or that changed since), else None."""
        for top in paths:
            for path in _files(top):
                if not self.is_ours(path):
                    return path
        return None

    def remove(self, path: Path) -> bool:
        """Delete the files under `path` that we wrote, then the folders left empty; True when nothing remains."""
        for item in _files(path):
            if self.is_ours(item):
                item.unlink()
                self.entries.pop(self._key(item), None)
        if path.is_dir() and not path.is_symlink():
            for folder in sorted((item for item in path.rglob("*") if item.is_dir()), reverse=True):
                if not any(folder.iterdir()):
                    folder.rmdir()
            if not any(path.iterdir()):
                path.rmdir()
        self.save()
        return not (path.exists() or path.is_symlink())

    def add(self, paths: Iterable[Path]) -> None:
        """Record every file now at or under each of `paths` as ours."""
        for path in paths:
            for item in _files(path):
                self.entries[self._key(item)] = signature(item)
        self.save()

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json(self.folder / RECORD, {"written": dict(sorted(self.entries.items()))}, indent=1)
