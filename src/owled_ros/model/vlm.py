"""DrivingVLM: vision encoder -> projector -> causal LM, LLaVA style.

Visual tokens are spliced into the LM's input embeddings between the prompt's
prefix and the question; vehicle state enters the prompt as text.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedTokenizerBase

from owled_ros.model.encoders import VisionEncoder
from owled_ros.model.ood import OodStats
from owled_ros.model.projector import MLPProjector
from owled_ros.model.prompt import end_of_answer, split_prompt
from owled_ros.schema import VehicleState

if TYPE_CHECKING:  # annotations only: the exported runtimes run without transformers' modeling code
    from transformers import PreTrainedModel


@dataclass(frozen=True)
class Generation:
    text: str
    token_texts: tuple[str, ...]
    token_probs: tuple[float, ...]


def assemble_lm_inputs(
    tokenizer: PreTrainedTokenizerBase,
    embed: nn.Module,
    visual: torch.Tensor,
    states: list[VehicleState | None],
    questions: list[str],
    answers: list[str] | None = None,
    left_pad: bool = False,
    prompt_cues: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, list[int]]]]:
    """Input embeddings (prompt prefix, visual tokens, question [+ answer]) and attention mask for
    a batch; also (answer start, answer ids) per row, for training. A function of the tokenizer
    and the embedding table, so runtimes that hold no torch LM (deploy/runner.py) build the same."""
    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    device = visual.device
    rows, spans = [], []
    for i, (state, question) in enumerate(zip(states, questions)):
        before, after = split_prompt(tokenizer, state, question, prompt_cues)
        pre = ids(before)
        post = ids(after)
        ans = ids(answers[i] + end_of_answer(tokenizer)) if answers is not None else []
        text_emb = embed(torch.tensor(pre + post + ans, dtype=torch.long, device=device))
        rows.append(torch.cat([text_emb[: len(pre)], visual[i].to(text_emb.dtype), text_emb[len(pre):]]))
        spans.append((len(pre) + visual.shape[1] + len(post), ans))
    length = max(r.shape[0] for r in rows)
    embeds = rows[0].new_zeros(len(rows), length, rows[0].shape[1])
    mask = torch.zeros(len(rows), length, dtype=torch.long, device=device)
    for i, row in enumerate(rows):
        n = row.shape[0]
        sl = slice(length - n, length) if left_pad else slice(0, n)
        embeds[i, sl] = row
        mask[i, sl] = 1
    return embeds, mask, spans


def to_generation(tokenizer: PreTrainedTokenizerBase, token_ids: list[int], token_probs: list[float]) -> Generation:
    """A generated sequence up to its end-of-answer (eos, or pad repeated), with each kept token's probability."""
    ids, toks, ps = [], [], []
    for t, tid in enumerate(token_ids):
        if tid == tokenizer.eos_token_id or (tid == tokenizer.pad_token_id and ids and ids[-1] == tid):
            break
        ids.append(tid)
        toks.append(tokenizer.decode([tid]))
        ps.append(token_probs[t] if t < len(token_probs) else 1.0)
    return Generation(tokenizer.decode(ids, skip_special_tokens=True).strip(), tuple(toks), tuple(ps))


class DrivingVLM(nn.Module):
    def __init__(
        self,
        encoder: VisionEncoder,
        projector: MLPProjector,
        lm: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        meta: dict | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = projector
        self.lm = lm
        self.tokenizer = tokenizer
        self.meta = dict(meta or {})
        self.ood: OodStats | None = None  # out-of-distribution statistics (model/ood.py); None: unavailable
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token

    @property
    def prompt_cues(self) -> bool:
        """Whether the prompt carries the speed's distances (`prompt.state_text`); set by training, kept in meta."""
        return bool(self.meta.get("prompt_cues", False))

    @property
    def device(self) -> torch.device:
        return next(self.lm.parameters()).device

    # ---- vision -------------------------------------------------------------------------------
    def encode(self, images: list[np.ndarray]) -> torch.Tensor:
        """Encoder tokens (B, N, C) for RGB uint8 images of any size."""
        return self.encoder(self.encoder.preprocess(images).to(self.device, next(self.encoder.parameters()).dtype))

    def visual_embeds(self, images: list[np.ndarray]) -> torch.Tensor:
        return self.projector(self.encode(images))

    def register_encoded_hook(self, hook: Callable[[torch.Tensor | None], None]) -> None:
        """hook(encoder tokens (B, N, C)) once per generate, right after the encoder (the
        pipeline times encode vs generate there and scores out-of-distribution frames)."""
        self.projector.register_forward_hook(lambda _module, inputs, _output: hook(inputs[0]))

    # ---- sequence assembly --------------------------------------------------------------------
    def lm_inputs(
        self,
        visual: torch.Tensor,
        states: list[VehicleState | None],
        questions: list[str],
        answers: list[str] | None = None,
        left_pad: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, list[int]]]]:
        """What the LM receives for a batch (see `assemble_lm_inputs`); public because calibration
        (prune, deploy) feeds the LM exactly this."""
        return assemble_lm_inputs(self.tokenizer, self.lm.get_input_embeddings(), visual, states, questions, answers, left_pad, self.prompt_cues)

    # ---- inference ----------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        images: list[np.ndarray],
        states: list[VehicleState | None],
        questions: list[str],
        max_new_tokens: int = 48,
    ) -> list[Generation]:
        """Greedy answers, with each generated token's probability (for confidence)."""
        return self.generate_from(self.visual_embeds(images), states, questions, max_new_tokens)

    @torch.no_grad()
    def generate_from(
        self,
        visual: torch.Tensor,
        states: list[VehicleState | None],
        questions: list[str],
        max_new_tokens: int = 48,
    ) -> list[Generation]:
        """`generate` from projected visual tokens: recovery (train/recover.py) lets the student
        answer from its cached encoder features."""
        embeds, mask, _ = self.lm_inputs(visual, states, questions, None, left_pad=True)
        out = self.lm.generate(
            inputs_embeds=embeds,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            output_scores=True,
            return_dict_in_generate=True,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
        )
        seqs = out.sequences
        probs = torch.stack([s.float().softmax(-1) for s in out.scores], dim=1)  # (B, T, V)
        picked = probs.gather(2, seqs[:, : probs.shape[1], None])[..., 0]
        return [to_generation(self.tokenizer, seqs[b].tolist(), picked[b].tolist()) for b in range(seqs.shape[0])]

    # ---- training -----------------------------------------------------------------------------
    def answer_logits(
        self,
        visual: torch.Tensor,
        states: list[VehicleState | None],
        questions: list[str],
        answers: list[str],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits that predict the answer tokens (lm_head runs on those positions alone, 49k vocab),
        the answer token ids, and the batch's attention mask (right-padded)."""
        embeds, mask, spans = self.lm_inputs(visual, states, questions, answers, left_pad=False)
        hidden = self.lm.get_decoder()(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        picks, targets = [], []
        for b, (start, ans) in enumerate(spans):
            positions = torch.arange(start - 1, start - 1 + len(ans), device=hidden.device)
            picks.append(hidden[b, positions])
            targets.append(torch.tensor(ans, device=hidden.device))
        return self.lm.get_output_embeddings()(torch.cat(picks)), torch.cat(targets), mask

    def answer_loss(
        self,
        visual: torch.Tensor,
        states: list[VehicleState | None],
        questions: list[str],
        answers: list[str],
    ) -> torch.Tensor:
        """Cross-entropy on answer tokens only."""
        logits, targets, _ = self.answer_logits(visual, states, questions, answers)
        return F.cross_entropy(logits.float(), targets)
