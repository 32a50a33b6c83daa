"""Peak anonymous and file-backed resident memory of a process, apart.

Why: VmHWM (the kernel's peak RSS) counts the pages of memory-mapped safetensors files
together with the process's own memory. Mapped file pages are clean and the kernel drops
them under pressure, so they overstate what a job needs and hide where its own memory
grows. The kernel keeps no peak per kind, so a thread samples /proc/PID/status
(RssAnon, RssFile + RssShmem) every few milliseconds; a peak shorter than the period can
be missed, so the sampled anonymous peak is a lower bound (VmHWM stays the upper one).
Sampling this process resets its VmHWM on entry (clear_refs 5), so peak_rss_mb reports the
job, not what the process held before it (a test run or a notebook that pruned earlier).
Stdlib only: the llm-compressor benchmark samples its child process with it too.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

PERIOD_S = 0.005


def _status_kb(pid: int | str, keys: tuple[str, ...]) -> dict[str, int] | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # gone, or not Linux
        return None
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in keys:
            out[key] = int(value.split()[0])
    return out


@dataclass
class MemoryPeaks:
    anon_mb: float = 0.0
    file_mb: float = 0.0  # file-backed and shared pages, their own peak

    def to_dict(self) -> dict:
        return {"peak_anon_mb": round(self.anon_mb, 1), "peak_file_mb": round(self.file_mb, 1)}


class MemorySampler:
    """`with MemorySampler() as m: ...`, then m.peaks; pid defaults to this process."""

    def __init__(self, pid: int | str = "self", period_s: float = PERIOD_S) -> None:
        self.pid, self.period_s = pid, period_s
        self.peaks = MemoryPeaks()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        kb = _status_kb(self.pid, ("RssAnon", "RssFile", "RssShmem"))
        if not kb:
            return
        anon = kb.get("RssAnon", 0) / 1024
        file = (kb.get("RssFile", 0) + kb.get("RssShmem", 0)) / 1024
        self.peaks.anon_mb = max(self.peaks.anon_mb, anon)
        self.peaks.file_mb = max(self.peaks.file_mb, file)

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.sample()

    def __enter__(self) -> MemorySampler:
        if self.pid == "self":
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:  # not Linux, or a kernel older than 4.0: VmHWM then spans the process
                pass
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
