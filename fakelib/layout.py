"""Where a dataset's images are, the one way every module finds them: `real/` and `fake/` under a root (any letter
case), and every image file below those folders (any depth, `_duplicates/` skipped, hidden files skipped).

Training (`data`), evaluation (`predict`), explanation quality (`quality`) and the bias audit (`audit`) all list
files here, so they agree on what a dataset holds. Nothing heavy is imported.
"""

from __future__ import annotations

from pathlib import Path

from fakelib.images import is_image_path

LABELS = {"real": 0, "fake": 1}
DUPLICATES_FOLDER = "_duplicates"  # where `fakelib dedup --apply` moves duplicates; never part of the dataset


def class_folders(root: Path, require_both: bool = True) -> dict[str, Path]:
    """Map `real`/`fake` to their folders under `root`, matching names in any letter case.

    Args:
        require_both: refuse a folder that lacks either class (training); False accepts one class (evaluation).

    Raises:
        FileNotFoundError: `root` does not exist.
        NotADirectoryError: `root` is not a folder.
        ValueError: a class folder is missing (with `require_both`), or both are.
    """
    if not root.exists():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"not a folder: {root}")
    found = {child.name.lower(): child for child in sorted(root.iterdir()) if child.is_dir()}
    missing = [name for name in LABELS if name not in found]
    if require_both and missing:
        raise ValueError(f"{root} has no {' and no '.join(name + '/' for name in missing)} folder "
                         "(a dataset is a folder with real/ and fake/ inside, any letter case)")
    if len(missing) == len(LABELS):
        raise ValueError(f"{root} has neither real/ nor fake/ folder")
    return {name: found[name] for name in LABELS if name in found}


def images_under(folder: Path) -> list[Path]:
    """Every image file below `folder`, sorted; `_duplicates/` folders and hidden files skipped."""
    return sorted(path for path in folder.rglob("*")
                  if path.is_file() and is_image_path(path) and DUPLICATES_FOLDER not in path.parts)


def dataset_files(root: Path, require_both: bool = True) -> list[tuple[str, int]]:
    """Every image file under `real/` and `fake/` as (relpath, label), sorted by relpath (see `class_folders`)."""
    return sorted((path.relative_to(root).as_posix(), LABELS[name])
                  for name, folder in class_folders(root, require_both).items() for path in images_under(folder))


def group_of(relpath: str) -> str:
    """The group of a file: its class folder and the first folder below it (`fake/stylegan2/x.jpg` -> `fake/stylegan2`)."""
    parts = Path(relpath).parts
    return "/".join(parts[:2]) if len(parts) > 2 else parts[0]
