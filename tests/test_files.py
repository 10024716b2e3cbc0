"""Atomic writes, the temporaries a killed writer leaves, and file digests."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from gpt.files import (
    atomic_path,
    process_alive,
    remove_stale_temporaries,
    sha256_of,
    write_bytes_atomic,
    write_text_atomic,
)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_text_atomic(tmp_path / "config.json", "old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_writes_replace_and_create_folders(tmp_path):
    path = write_bytes_atomic(tmp_path / "deep" / "er" / "blob.bin", b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    write_bytes_atomic(path, b"new")
    assert path.read_bytes() == b"new" and len(list(path.parent.iterdir())) == 1


def test_sha256_of_reads_in_chunks(tmp_path):
    data = bytes(range(256)) * 10_000  # more than one read
    path = write_bytes_atomic(tmp_path / "big.bin", data)
    assert sha256_of(path) == hashlib.sha256(data).hexdigest()


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped): what a kill -9 leaves in a temporary's name."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_are_removed_and_a_live_writers_kept(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {".train_state.safetensors.{}.tmp": dead_pid(), ".log.csv.{}.tmp": dead_pid(),
                 ".model.safetensors.{}.tmp": live.pid, ".config.json.{}.tmp": os.getpid(),
                 ".huge.{}.tmp": 10**30}
        for pattern, pid in names.items():
            (tmp_path / pattern.format(pid)).write_text("half")
        (tmp_path / "log.csv").write_text("step\n")
        (tmp_path / ".notes.tmp").write_text("not ours: no pid")
        removed = remove_stale_temporaries(tmp_path)
        assert sorted(p.name.split(".")[1] for p in removed) == ["huge", "log", "train_state"]
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [".notes.tmp", "log.csv", f".model.safetensors.{live.pid}.tmp", f".config.json.{os.getpid()}.tmp"])
    finally:
        live.kill()
        live.wait()
    assert remove_stale_temporaries(tmp_path / "absent") == []


def test_a_finished_process_is_not_alive_and_this_one_is():
    assert process_alive(os.getpid()) and not process_alive(dead_pid()) and not process_alive(2**80)
