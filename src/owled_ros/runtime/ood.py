"""What the vehicle path does with a frame unlike the model's training frames (model/ood.py scores it).

`publish` keeps the model's answer and only flags it (ood_score, out_of_distribution in both
messages); `unknown` replaces the action by UNKNOWN with confidence 0 and the reason, so a stack
that gates on the action never acts on an answer the model cannot ground. The scene description
is published either way, flagged.
"""
from __future__ import annotations

from dataclasses import replace

from owled_ros.schema import ActionResult, FrameResult
from owled_ros.vocab import Action

OOD_ACTIONS: tuple[str, ...] = ("publish", "unknown")


def ood_reason(score: float) -> str:
    return f"out of distribution: the frame is unlike the model's training frames (ood_score {score:.2f} > 1)"


def apply_ood_action(result: FrameResult, ood_action: str) -> FrameResult:
    """The result as the node publishes it under `ood_action` (one of OOD_ACTIONS)."""
    if ood_action not in OOD_ACTIONS:
        raise ValueError(f"ood_action must be one of {', '.join(OOD_ACTIONS)}, got {ood_action!r}")
    if ood_action == "publish" or not result.out_of_distribution:
        return result
    return replace(result, action=ActionResult(Action.UNKNOWN, None, 0.0, ood_reason(result.ood_score)))
