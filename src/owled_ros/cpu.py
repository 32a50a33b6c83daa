"""What this CPU computes natively, read once from /proc/cpuinfo (no torch import).

Kernel choices depend on it: int8 decode activations may use the full 8 bits only with
VNNI, and bf16 matrix products are only faster than fp32 where the CPU has bf16 dot
products (AVX512-BF16 or AMX); elsewhere torch emulates them, slower than fp32.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    match = re.search(r"^flags\s*:(.*)$", text, re.MULTILINE)
    return frozenset(match.group(1).split()) if match else frozenset()


def has_vnni() -> bool:
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni"})


def has_native_bf16() -> bool:
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})
