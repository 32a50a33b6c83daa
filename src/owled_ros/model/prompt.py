"""The one prompt format of the DrivingVLM: visual tokens, vehicle state as text, the question.

Prompts are kept short on purpose: every token costs prefill time on the vehicle CPU
and backward time in training.
"""
from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from owled_ros.kinematics import TIME_GAP_S, braking_distance, stop_zone
from owled_ros.schema import VehicleState

FRAME_QUESTION = "Describe the scene and the action."
ACTION_MARKER = "Action:"


def scene_token_count(tokenizer: PreTrainedTokenizerBase, answer: str) -> int:
    """Answer tokens before the action marker (the scene description); all of them if it has none."""
    cut = answer.find(ACTION_MARKER)
    return len(tokenizer(answer[:cut].rstrip() if cut >= 0 else answer, add_special_tokens=False)["input_ids"])


def state_text(state: VehicleState | None, cues: bool = False) -> str:
    """`cues` adds the distances the ego speed implies (2 s gap, stop zone, braking distance).

    A 135M LM reads "car at 25 m" from the image well but computes v * 2 s or v^2 / 6 from
    "Speed 14 m/s" poorly; with the distances in the prompt the decision is a comparison of
    two numbers. They come from the vehicle state alone, as a planner would compute them."""
    if state is None or state.speed_mps is None:
        return "Speed unknown."
    parts = [f"Speed {state.speed_mps:.0f} m/s"]
    if state.accel_mps2 is not None:
        parts.append(f"accel {state.accel_mps2:+.1f}")
    if state.yaw_rate_rps is not None:
        parts.append(f"yaw {state.yaw_rate_rps:+.2f}")
    text = ", ".join(parts) + "."
    if cues:
        v = state.speed_mps
        text += f" Gap {TIME_GAP_S * v:.0f} m, stop zone {stop_zone(v):.0f} m, braking {braking_distance(v):.0f} m."
    return text


def split_prompt(
    tokenizer: PreTrainedTokenizerBase, state: VehicleState | None, question: str, cues: bool = False
) -> tuple[str, str]:
    """(text before the visual tokens, text after them, ending where the answer starts)."""
    user = f"{state_text(state, cues)} {question}"
    if uses_chatml(tokenizer):
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
    return "<|im_end|>" if uses_chatml(tokenizer) else (tokenizer.eos_token or "")


def uses_chatml(tokenizer: PreTrainedTokenizerBase) -> bool:
    """One token lookup: `get_vocab()` builds the whole 49k dict (28 ms), twice per training example."""
    token_id = tokenizer.convert_tokens_to_ids("<|im_start|>")
    return token_id is not None and token_id != tokenizer.unk_token_id
