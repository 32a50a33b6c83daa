"""The one prompt format of the DrivingVLM: visual tokens, vehicle state as text, the question.

Prompts are kept short on purpose: every token costs prefill time on the vehicle CPU
and backward time in training.
"""
from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from owled_ros.schema import VehicleState

FRAME_QUESTION = "Describe the scene and the action."
ACTION_MARKER = "Action:"


def state_text(state: VehicleState | None) -> str:
    if state is None or state.speed_mps is None:
        return "Speed unknown."
    parts = [f"Speed {state.speed_mps:.0f} m/s"]
    if state.accel_mps2 is not None:
        parts.append(f"accel {state.accel_mps2:+.1f}")
    if state.yaw_rate_rps is not None:
        parts.append(f"yaw {state.yaw_rate_rps:+.2f}")
    return ", ".join(parts) + "."


def split_prompt(tokenizer: PreTrainedTokenizerBase, state: VehicleState | None, question: str) -> tuple[str, str]:
    """(text before the visual tokens, text after them, ending where the answer starts)."""
    user = f"{state_text(state)} {question}"
    if "<|im_start|>" in tokenizer.get_vocab():
        return "<|im_start|>user\n", f"\n{user}<|im_end|>\n<|im_start|>assistant\n"
    if tokenizer.chat_template:
        marker = "\x00IMAGE\x00"
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": f"{marker}\n{user}"}], tokenize=False, add_generation_prompt=True
        )
        before, after = text.split(marker, 1)
        return before, after
    return "User: ", f"\n{user}\nAssistant: "


def end_of_answer(tokenizer: PreTrainedTokenizerBase) -> str:
    """Text appended to training answers so the model learns to stop."""
    return "<|im_end|>" if "<|im_start|>" in tokenizer.get_vocab() else (tokenizer.eos_token or "")
