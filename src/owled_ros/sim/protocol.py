"""The wire between `owled sim` (in .venv) and the MetaDrive world process (in .venv-sim).

Two interpreters with different numpy versions, so nothing is pickled: a request is one JSON
line; a reply is one JSON line and, when the reply says `image_bytes: N`, N raw bytes after it
(a BGR uint8 frame, height x width x 3). Standard library only: both sides import this file.
"""
from __future__ import annotations

import json
from typing import IO, Any


class WorldError(RuntimeError):
    """The world process failed or answered something unexpected."""


def send(stream: IO[bytes], message: dict[str, Any], payload: bytes = b"") -> None:
    header = dict(message, image_bytes=len(payload))
    stream.write(json.dumps(header).encode() + b"\n")
    if payload:
        stream.write(payload)
    stream.flush()


def receive(stream: IO[bytes]) -> tuple[dict[str, Any], bytes]:
    line = stream.readline()
    if not line:
        raise WorldError("the world process closed its output")
    try:
        message = json.loads(line)
    except json.JSONDecodeError as err:
        raise WorldError(f"unreadable line from the world process: {line[:200]!r}") from err
    size = int(message.pop("image_bytes", 0))
    payload = stream.read(size) if size else b""
    if len(payload) != size:
        raise WorldError(f"the world process sent {len(payload)} of {size} image bytes")
    return message, payload
