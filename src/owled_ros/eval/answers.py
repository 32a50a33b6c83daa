"""The per-frame answer files `owled eval driving-qa --answers` writes, read back for paired analyses."""
from __future__ import annotations

import json
from pathlib import Path

from owled_ros.errors import OwledError

HOW = "write it with owled eval driving-qa --answers"


def read_answers(path: Path, fields: tuple[str, ...]) -> list[dict]:
    """One record per frame, each holding `fields`; anything else is one clear error."""
    path = Path(path)
    if not path.is_file():
        raise OwledError(f"{path}: no such file ({HOW})")
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise OwledError(f"{path}: not JSON lines ({err})") from None
    if not rows or any(not isinstance(r, dict) or any(r.get(f) is None for f in fields) for r in rows):
        raise OwledError(f"{path}: needs one record per frame with {', '.join(repr(f) for f in fields)} ({HOW})")
    return rows
