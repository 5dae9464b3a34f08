"""fakelib.dedup: the hash index the scraper shares, and exact/near duplicate groups in a folder."""

from __future__ import annotations

import csv
import json
import threading
from pathlib import Path

import pytest
from PIL import Image

from fakelib.__main__ import main
from fakelib.dedup import HashIndex, dedup_folder, find_duplicates, hamming, phash_hex, scan_folder
from fakelib.images import open_image
from scrape_server import face_image, image_bytes, near_bytes

pytestmark = pytest.mark.timeout(60)


def save(path: Path, image: Image.Image, **options) -> Path:
    image.save(path, **options)
    return path


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """a.png, its byte copy, its near duplicate, a larger re-encode of b, b itself, c, an unreadable file."""
    (tmp_path / "a.png").write_bytes(image_bytes(1))
    (tmp_path / "a-copy.png").write_bytes(image_bytes(1))
    (tmp_path / "a-near.jpg").write_bytes(near_bytes(1))
    save(tmp_path / "b-large.png", face_image(2).resize((128, 128), Image.Resampling.BICUBIC))
    (tmp_path / "b.png").write_bytes(image_bytes(2))
    (tmp_path / "c.png").write_bytes(image_bytes(3))
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "notes.txt").write_text("not an image either", encoding="utf-8")
    return tmp_path


def test_index_claims_exact_and_near_duplicates_once():
    index = HashIndex(threshold=6)
    first = phash_hex(open_image(image_bytes(1)))
    near = phash_hex(open_image(near_bytes(1)))
    assert index.claim("a" * 64, first) is None
    assert index.claim("a" * 64, first).kind == "duplicate"
    match = index.claim("b" * 64, near)
    assert match.kind == "near_duplicate" and match.sha256 == "a" * 64 and match.distance == hamming(first, near)
    index.release("a" * 64)
    assert index.claim("b" * 64, near) is None and len(index) == 1


def test_index_grows_and_is_safe_across_threads():
    index = HashIndex(threshold=0)
    hashes = [f"{number:016x}" for number in range(0, 3000 * 7, 7)]  # distinct, some within 1 bit of others
    winners: list[list[str]] = [[] for _ in range(4)]

    def claim(number: int) -> None:
        chunk = hashes[number::4]
        winners[number] = [value for value in chunk + chunk if index.claim(value * 4, value) is None]

    threads = [threading.Thread(target=claim, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(sum(winners, [])) == sorted(hashes) and len(index) == 3000


def test_index_rejects_a_bad_threshold():
    with pytest.raises(ValueError, match="threshold = 65 is not allowed; expected an integer 0..64"):
        HashIndex(threshold=65)


def test_groups_keep_the_largest_copy(folder):
    rows = find_duplicates(scan_folder(folder), threshold=6)
    groups: dict[int, dict[str, str]] = {}
    for row in rows:
        groups.setdefault(row["group"], {})[row["file"]] = row["role"] if row["role"] == "keep" else row["kind"]
    # Same size and bytes: the name decides ("a-copy" sorts before "a."), so the choice is stable.
    assert sorted(groups.values(), key=len) == [
        {"b-large.png": "keep", "b.png": "near_duplicate"},
        {"a-copy.png": "keep", "a.png": "duplicate", "a-near.jpg": "near_duplicate"},
    ]


def test_dry_run_writes_csv_and_moves_nothing(folder):
    before = sorted(path.name for path in folder.iterdir())
    summary = dedup_folder(folder, threshold=6)
    assert sorted(path.name for path in folder.iterdir()) == sorted(before + ["duplicates.csv"])
    assert summary["files"] == 7 and summary["groups"] == 2 and summary["moved"] == 0
    assert summary["exact_duplicates"] == 1 and summary["near_duplicates"] == 2
    assert summary["unreadable"] == 1 and summary["unreadable_files"] == ["broken.jpg"]
    with (folder / "duplicates.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["action"] for row in rows} == {"keep", "would_move"} and len(rows) == 5


def test_apply_moves_duplicates_and_never_deletes(folder):
    (folder / "_duplicates").mkdir()
    (folder / "_duplicates" / "b-large.png").write_bytes(b"an older move")
    summary = dedup_folder(folder, threshold=6, apply=True, csv_path=folder / "groups.csv")
    assert summary["moved"] == 3
    moved = sorted(path.name for path in (folder / "_duplicates").iterdir())
    assert len(moved) == 4 and "b-large-1.png" in moved  # no overwrite of the earlier b-large.png
    assert (folder / "_duplicates" / "b-large.png").read_bytes() == b"an older move"
    # b-large.png is b.png up-scaled: more pixels, no more detail, so the original is kept (issue 13)
    assert sorted(path.name for path in folder.glob("*.png")) == ["a-copy.png", "b.png", "c.png"]
    again = dedup_folder(folder, threshold=6)
    assert again["groups"] == 0 and again["files"] == 4


def test_threshold_zero_finds_only_identical_hashes(folder):
    summary = dedup_folder(folder, threshold=0)
    assert summary["exact_duplicates"] == 1 and summary["near_duplicates"] <= 1  # a-near.jpg is 1-4 bits away


def test_cli_prints_json_and_reports_errors(folder, capsys):
    assert main(["dedup", str(folder), "--threshold", "6"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["groups"] == 2 and summary["applied"] is False
    assert main(["dedup", str(folder / "nope")]) == 2
    assert capsys.readouterr().err.strip() == f"fakelib dedup: error: not a folder: {folder / 'nope'}"


def test_manifest_rows_are_trusted_only_for_files_of_the_recorded_size(tmp_path):
    data = image_bytes(5)
    (tmp_path / "x.png").write_bytes(data)
    stale = {"x.png": ("f" * 64, "0" * 16, 1, 1, len(data) + 1)}
    record = scan_folder(tmp_path, stale)[0]  # another size: the file is read and decoded
    assert record.phash == phash_hex(open_image(data)) and record.width == 64 and record.sha256 != "f" * 64
    same_size = {"x.png": ("f" * 64, "0" * 16, 1, 1, len(data))}
    assert scan_folder(tmp_path, same_size)[0].phash == "0" * 16  # trusted without reading
