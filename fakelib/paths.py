"""Every path the project uses, anchored on the repository root (no side effects at import)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
DEMO = DATA / "demo"
CACHE = DATA / "cache"
SCRAPED = DATA / "scraped"
REPORTS = ROOT / "reports"
EXPERIMENTS = REPORTS / "experiments"
BEST = REPORTS / "best"
EXPLAIN = REPORTS / "explain"
NOTEBOOKS = ROOT / "notebooks"
PARAMS = ROOT / "params.yaml"


def resolve(path: str | Path, base: Path = ROOT) -> Path:
    """Return `path` as an absolute path, relative paths taken from `base` (the repo root by default)."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else (base / path).resolve()
