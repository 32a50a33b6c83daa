"""Directories written whole or not at all, readable by the user a vehicle stack runs the node as."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from owled_ros.errors import OwledError
from owled_ros.fsutil import staged_dir


def test_a_staged_directory_appears_whole_with_ordinary_modes(tmp_path: Path) -> None:
    out = tmp_path / "model"
    with staged_dir(out) as tmp:
        (tmp / "lm").mkdir(parents=True)
        save_file({"w": torch.zeros(2)}, str(tmp / "lm" / "w.safetensors"))  # safetensors writes owner-only files
        assert not out.exists()
    umask = os.umask(0)
    os.umask(umask)
    for path, full in ((out, 0o777), (out / "lm", 0o777), (out / "lm" / "w.safetensors", 0o666)):
        assert stat.S_IMODE(path.stat().st_mode) == full & ~umask, path
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary holder left


def test_a_failed_write_leaves_the_old_directory_and_nothing_else(tmp_path: Path) -> None:
    out = tmp_path / "model"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), staged_dir(out, replace=True) as tmp:
        tmp.mkdir()
        (tmp / "new.txt").write_text("new")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_an_existing_directory_is_refused_without_replace(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "x").write_text("x")
    with pytest.raises(OwledError, match="already exists"), staged_dir(tmp_path / "model"):
        pass
