"""Calibration activations in memory up to a budget, in memory-mapped files beyond it (`owled prune --max-memory`).

Why: a streamed prune holds one block of weights, so what grows with the calibration set is the
activations (4 * N * T * h bytes: 128 LLaVA samples at 7B width are 1.3 GB, and a walk that must
keep the capture holds them twice). Beyond the budget each batch's tensor lives in a file of its own
mapped with `torch.from_file(shared=True)`: the kernel pages it in and out like any file, and the
pages count as file-backed, not anonymous, memory. The numbers are the same either way (a test).

`Activations` is the list the capture appends to and the walk reads and replaces; a working copy
(`copy`) shares the captured tensors until it replaces one, and a spilled slot then gets a file of
its own, so the capture stays intact for the next walk.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from owled_ros.errors import OwledError

MB = 2**20


@dataclass
class SpillPolicy:
    """Resident budget for one capture (bytes) and where spill files go."""

    budget: int
    directory: Path


_policy: SpillPolicy | None = None


def default_max_memory_mb() -> float:
    """Half of the memory available when the prune starts (MemAvailable); 4 GB where /proc/meminfo is missing."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024 / 2
    except OSError:
        pass
    return 4096.0


@contextmanager
def spill_beyond(max_memory_mb: float | None, directory: Path, activation_bytes: int) -> Iterator[None]:
    """Within the block, a capture keeps up to half of `max_memory_mb` resident (a working copy may take the
    other half) and spills the rest to a temporary directory under `directory`. `activation_bytes`, the size
    of the largest capture, sizes the disk check, done here, before any work. None: no budget."""
    global _policy
    if max_memory_mb is None:
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    budget = int(max_memory_mb * MB / 2)
    need = 2 * max(0, activation_bytes - budget)  # the spilled part of a capture and of its working copy
    free = shutil.disk_usage(directory).free
    if need > free:
        raise OwledError(f"not enough disk for the spill files in {directory}: about {need / MB:.1f} MB needed, "
                         f"{free / MB:.1f} MB free (raise --max-memory or free disk)")
    spill_dir = Path(tempfile.mkdtemp(prefix=".owled-spill-", dir=directory))
    previous, _policy = _policy, SpillPolicy(budget, spill_dir)
    try:
        yield
    finally:
        _policy = previous
        shutil.rmtree(spill_dir, ignore_errors=True)


class Activations:
    """One tensor per calibration batch; the ones past the budget are file-backed. A tensor appended
    belongs to the list from then on: replacing it writes into it."""

    def __init__(self, policy: SpillPolicy | None = None) -> None:
        self.policy = policy if policy is not None else _policy
        self._tensors: list[torch.Tensor] = []
        self._spilled: list[bool] = []
        self._own: list[bool] = []  # a slot this list may write in place (a copy's slots are shared until written)
        self._resident = 0

    def __len__(self) -> int:
        return len(self._tensors)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self._tensors)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self._tensors[i]

    @property
    def spilled(self) -> int:
        return sum(self._spilled)

    def append(self, tensor: torch.Tensor) -> None:
        nbytes = tensor.numel() * tensor.element_size()
        if self.policy is None or tensor.device.type != "cpu" or self._resident + nbytes <= self.policy.budget:
            self._resident += nbytes
            self._tensors.append(tensor)
            self._spilled.append(False)
            self._own.append(True)
            return
        self._tensors.append(self._file_copy(tensor))
        self._spilled.append(True)
        self._own.append(True)

    def __setitem__(self, i: int, tensor: torch.Tensor) -> None:
        """Replace batch i's tensor: in place where the slot is this list's own and the same shape (a walk's
        outputs then reuse its inputs' memory instead of leaving them as heap holes: 75 MB of a SmolLM2
        prune's peak, BENCHMARKS 3); a shared slot gets the new tensor, or a new file if spilled."""
        same = self._tensors[i].shape == tensor.shape and self._tensors[i].dtype == tensor.dtype
        if self._own[i] and same and self._tensors[i].device == tensor.device:
            self._tensors[i].copy_(tensor)
        elif not self._spilled[i]:
            self._tensors[i], self._own[i] = tensor, True
        else:
            self._tensors[i], self._own[i] = self._file_copy(tensor), True

    def copy(self) -> Activations:
        """A working copy: the same tensors until replaced; replacing one never touches this list."""
        other = Activations(self.policy)
        other._tensors, other._spilled, other._resident = list(self._tensors), list(self._spilled), self._resident
        other._own = [False] * len(self._tensors)
        return other

    def _file_copy(self, tensor: torch.Tensor) -> torch.Tensor:
        assert self.policy is not None
        fd, name = tempfile.mkstemp(suffix=".bin", dir=self.policy.directory)
        os.close(fd)
        mapped = torch.from_file(name, shared=True, size=tensor.numel(), dtype=tensor.dtype).view(tensor.shape)
        os.unlink(name)  # the mapping keeps the pages; the disk space goes when the tensor does
        mapped.copy_(tensor)
        return mapped
