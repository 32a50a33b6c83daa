"""Files written whole or not at all: a crash or Ctrl-C never leaves half a report behind."""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from owled_ros.errors import OwledError


def write_text_atomic(path: Path, text: str) -> None:
    """Write a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, ordinary_mode(directory=False))  # mkstemp makes it owner-only
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_safetensors_atomic(tensors: dict, path: Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors.torch.save_file, through a temporary file beside `path`."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.chmod(tmp, ordinary_mode(directory=False))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ordinary_mode(directory: bool) -> int:
    """The mode a plain open()/mkdir() would give under this process's umask. mkstemp, mkdtemp and
    safetensors create owner-only files, and a node running as another user (a vehicle stack's
    service account) must read what we write. The umask is read, never set (os.umask would
    change it for every thread)."""
    umask = 0o022
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                umask = int(line.split()[1], 8)
    except OSError:  # not Linux
        pass
    return (0o777 if directory else 0o666) & ~umask


def _ordinary_modes(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            path.chmod(ordinary_mode(path.is_dir()))


@contextmanager
def staged_dir(out: Path, replace: bool = False) -> Iterator[Path]:
    """A path beside `out` to create and fill; it becomes `out` only if the block completes.

    The path does not exist yet (so writers that insist on creating their directory work). An
    existing `out` is refused unless it is an empty directory or `replace` is set. Any exception,
    Ctrl-C included, leaves nothing behind and `out` as it was.
    """
    out = Path(out)
    if out.exists() and not replace and not (out.is_dir() and not any(out.iterdir())):
        raise OwledError(f"{out}: already exists (choose another --out or remove it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    holder = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        staged = holder / out.name
        yield staged
        _ordinary_modes(staged)
        if out.is_dir():
            shutil.rmtree(out)
        os.replace(staged, out)
    finally:
        shutil.rmtree(holder, ignore_errors=True)
