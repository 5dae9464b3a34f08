"""fakelib.atomic: whole files or none, and leftovers a later run can recognise."""

from __future__ import annotations

import json
import os

import pytest

from fakelib import atomic, demo


def test_writes_are_whole_and_leave_no_temporary(tmp_path):
    atomic.write_bytes(tmp_path / "a.bin", b"old")
    atomic.write_bytes(tmp_path / "a.bin", b"new", durable=True)
    atomic.write_text(tmp_path / "b.csv", "x,y\r\n1,2\r\n")
    atomic.write_json(tmp_path / "c.json", {"value": float("nan")})
    with pytest.raises(ValueError):
        atomic.write_json(tmp_path / "d.json", {"value": float("nan")}, allow_nan=False)
    assert (tmp_path / "a.bin").read_bytes() == b"new"
    assert (tmp_path / "b.csv").read_bytes() == b"x,y\r\n1,2\r\n"  # line endings as given
    assert json.loads((tmp_path / "c.json").read_text().replace("NaN", "null")) == {"value": None}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.bin", "b.csv", "c.json"]


def test_a_failed_rename_keeps_the_old_file_and_removes_the_temporary(tmp_path, monkeypatch):
    atomic.write_bytes(tmp_path / "a.bin", b"old")

    def interrupted(source, target):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic.write_bytes(tmp_path / "a.bin", b"new")
    assert [path.name for path in tmp_path.iterdir()] == ["a.bin"]
    assert (tmp_path / "a.bin").read_bytes() == b"old"


@pytest.mark.parametrize("name, target", [
    (".face.jpg.0123abcd.part", "face.jpg"), (".a.b.c.ffffffff.part", "a.b.c"),
    ("face.jpg.0123abcd.part", None), (".face.jpg.part", None), (".face.jpg.0123ABCD.part", None),
    (".face.jpg.0123abc.part", None), (".notes.txt", None),
])
def test_temporary_target_recognises_only_its_own_temporaries(tmp_path, name, target):
    found = atomic.temporary_target(tmp_path / name)
    assert found == (tmp_path / target if target else None)


def test_demo_rerun_removes_a_killed_run_s_temporaries_and_nothing_else(tmp_path):
    demo.generate(tmp_path, count=4, size=32, workers=1)
    leftover = tmp_path / "real" / ".real_000000.jpg.0123abcd.part"
    foreign = tmp_path / "real" / ".someone_else.jpg.0123abcd.part"
    leftover.write_bytes(b"half")
    foreign.write_bytes(b"not ours")
    demo.generate(tmp_path, count=4, size=32, workers=1)
    assert not leftover.exists() and foreign.exists()
