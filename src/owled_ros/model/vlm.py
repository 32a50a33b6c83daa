"""DrivingVLM: vision encoder -> projector -> causal LM, LLaVA style.

Visual tokens are spliced into the LM's input embeddings between the prompt's
prefix and the question; vehicle state enters the prompt as text.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from owled_ros.model.encoders import VisionEncoder
from owled_ros.model.projector import MLPProjector
from owled_ros.model.prompt import end_of_answer, split_prompt
from owled_ros.schema import VehicleState


@dataclass(frozen=True)
class Generation:
    text: str
    token_texts: tuple[str, ...]
    token_probs: tuple[float, ...]


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
        return self.encoder(self.encoder.preprocess(images).to(self.device))

    def visual_embeds(self, images: list[np.ndarray]) -> torch.Tensor:
        return self.projector(self.encode(images))

    # ---- sequence assembly --------------------------------------------------------------------
    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def _assemble(
        self,
        visual: torch.Tensor,
        states: list[VehicleState | None],
        questions: list[str],
        answers: list[str] | None,
        left_pad: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, list[int]]]]:
        """Embeddings and mask for a batch; for training also (answer start, answer ids) per row."""
        embed = self.lm.get_input_embeddings()
        rows, spans = [], []
        for i, (state, question) in enumerate(zip(states, questions)):
            before, after = split_prompt(self.tokenizer, state, question, self.prompt_cues)
            pre = self._ids(before)
            post = self._ids(after)
            ans = self._ids(answers[i] + end_of_answer(self.tokenizer)) if answers is not None else []
            text_ids = torch.tensor(pre + post + ans, dtype=torch.long, device=self.device)
            text_emb = embed(text_ids)
            row = torch.cat([text_emb[: len(pre)], visual[i].to(text_emb.dtype), text_emb[len(pre):]])
            rows.append(row)
            spans.append((len(pre) + visual.shape[1] + len(post), ans))
        length = max(r.shape[0] for r in rows)
        dim = rows[0].shape[1]
        embeds = rows[0].new_zeros(len(rows), length, dim)
        mask = torch.zeros(len(rows), length, dtype=torch.long, device=self.device)
        for i, row in enumerate(rows):
            n = row.shape[0]
            sl = slice(length - n, length) if left_pad else slice(0, n)
            embeds[i, sl] = row
            mask[i, sl] = 1
        return embeds, mask, spans

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
        embeds, mask, _ = self._assemble(self.visual_embeds(images), states, questions, None, left_pad=True)
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
        results = []
        for b in range(seqs.shape[0]):
            ids, toks, ps = [], [], []
            for t in range(seqs.shape[1]):
                tid = int(seqs[b, t])
                if tid == self.tokenizer.eos_token_id or (tid == self.tokenizer.pad_token_id and t > 0 and ids and ids[-1] == tid):
                    break
                ids.append(tid)
                toks.append(self.tokenizer.decode([tid]))
                ps.append(float(probs[b, t, tid]) if t < probs.shape[1] else 1.0)
            results.append(Generation(self.tokenizer.decode(ids, skip_special_tokens=True).strip(), tuple(toks), tuple(ps)))
        return results

    # ---- training -----------------------------------------------------------------------------
    def answer_loss(
        self,
        visual: torch.Tensor,
        states: list[VehicleState | None],
        questions: list[str],
        answers: list[str],
    ) -> torch.Tensor:
        """Cross-entropy on answer tokens only; lm_head runs on those positions alone (49k vocab)."""
        embeds, mask, spans = self._assemble(visual, states, questions, answers, left_pad=False)
        hidden = self.lm.get_decoder()(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        picks, targets = [], []
        for b, (start, ans) in enumerate(spans):
            positions = torch.arange(start - 1, start - 1 + len(ans), device=hidden.device)
            picks.append(hidden[b, positions])
            targets.append(torch.tensor(ans, device=hidden.device))
        logits = self.lm.get_output_embeddings()(torch.cat(picks))
        return F.cross_entropy(logits.float(), torch.cat(targets))
