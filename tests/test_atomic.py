"""Atomic outputs: files written together appear together or not at all, and every OS error while
writing is one OutputError naming the path."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from dnadiff.atomic import OutputError, atomic_write_files, check_output_dir, check_output_file, orphan_temporaries


def test_files_are_written_together_or_not_at_all(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.png"
    atomic_write_files({a: b"old a", b: b"old b"})

    def interrupted(fh) -> None:
        fh.write(b"half of b")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write_files({a: b"new a", b: interrupted})
    assert (a.read_bytes(), b.read_bytes()) == (b"old a", b"old b")
    assert orphan_temporaries(tmp_path) == []
    atomic_write_files({a: b"new a", b: lambda fh: fh.write(b"new b")})
    assert (a.read_bytes(), b.read_bytes()) == (b"new a", b"new b")


def test_a_full_disk_is_one_error_naming_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out" / "samples.fa"
    atomic_write_files({target: b">old\nACGT\n"})

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputError) as err:
        atomic_write_files({target: b">new\nTTTT\n"})
    assert str(err.value) == f"cannot write {target}: No space left on device" and err.value.errno == errno.ENOSPC
    assert target.read_bytes() == b">old\nACGT\n" and orphan_temporaries(target.parent) == []


def test_output_paths_are_checked_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "ro.json").write_text("{}")
    (tmp_path / "ro.json").chmod(0o444)
    cases = {
        tmp_path: "it is a folder",
        tmp_path / "file" / "new.fa": f"{tmp_path / 'file'} is not a folder",
        tmp_path / "ro.json": "the file is read-only",
    }
    for path, why in cases.items():
        with pytest.raises(OutputError, match=why):
            check_output_file(path)
    with pytest.raises(OutputError, match="it exists and is not a folder"):
        check_output_dir(tmp_path / "file")
    with pytest.raises(OutputError, match="ro.json: the file is read-only"):
        check_output_dir(tmp_path, ["ro.json"])
    assert check_output_file(tmp_path / "new" / "deeper" / "x.fa") == tmp_path / "new" / "deeper" / "x.fa"
    assert not (tmp_path / "new").exists(), "a check creates nothing"
