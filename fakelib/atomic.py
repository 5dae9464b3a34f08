"""Atomic file writes, the one way fakelib replaces a file: a hidden temporary beside it, then a rename.

A reader, or a rerun after the process is killed, sees either the old file (or none) or the whole new one. A killed
writer leaves only a hidden temporary, `.<name>.<8 hex digits>.part`, which `temporary_target` recognises so the
next run can remove it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

TEMPORARY_SUFFIX = ".part"
_TEMPORARY = re.compile(r"\.(?P<target>.+)\.[0-9a-f]{8}" + re.escape(TEMPORARY_SUFFIX))


def write_bytes(path: str | Path, data: bytes, durable: bool = False) -> None:
    """Write `data` to a hidden temporary file beside `path`, then rename it to `path`.

    Args:
        durable: fsync before the rename, so the file also survives a power loss (about 6 ms per file here; the
            scraper does without and instead checks each file against the SHA-256 in its name at start-up).
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")
    try:
        with temporary.open("xb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str, durable: bool = False) -> None:
    """`write_bytes` of `text` in UTF-8, line endings as given (a CSV writer's `\\r\\n` stays)."""
    write_bytes(path, text.encode("utf-8"), durable)


def write_json(path: str | Path, payload: Any, durable: bool = False, **options: Any) -> None:
    """`write_text` of `json.dumps(payload, indent=2, **options)` (for example `allow_nan=False`, `default=str`)."""
    write_text(path, json.dumps(payload, **{"indent": 2, **options}), durable)


def temporary_target(path: Path) -> Path | None:
    """The file a leftover temporary of these writers was to become, or None when `path` is not such a temporary."""
    match = _TEMPORARY.fullmatch(path.name)
    return path.with_name(match["target"]) if match else None
