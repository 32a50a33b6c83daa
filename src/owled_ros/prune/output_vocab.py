"""The tokens a driving model says, and its LM head trimmed to them (`owled trim-vocab`).

At batch 1 a frame is some 56 one-token decode steps, and SmolLM2's tied 49,152 x 576 head
is a fifth of the weights every step reads (BENCHMARKS 2.8). A driving model answers from a
small vocabulary, so the head keeps only those rows (model/widths.KeptVocabHead): a structured
prune of the output layer that changes no answer whose every token is in the set. The set:
- the tokenizer's special tokens (end of answer, padding);
- every token of the answers the generated data teaches (the frame answer and the DriveLM QA
  answers of `grammar_scenes` train scenes, tokenized as training tokenizes them);
- every token the model itself says, greedily, to the calibration frames (the node's question
  and the sample's own), so words a model learnt from other data are kept too.
The check answers held-out val scenes with the full head and with the trimmed one; a trimmed
model whose answers differ is still written, and the report says on how many frames.

Trim last: a trimmed head gives other tokens the lowest float as logit, so it cannot be
distilled from a full-vocabulary teacher; `owled recover` refuses it.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from tqdm import tqdm

from owled_ros.data.calibration import CalibrationSet, VisualSample
from owled_ros.model.prompt import FRAME_QUESTION, end_of_answer
from owled_ros.model.vlm import DrivingVLM
from owled_ros.model.widths import output_tokens, trim_output_head

BATCH = 8


@dataclass(frozen=True)
class TrimReport:
    kept_tokens: int
    vocab_size: int
    grammar_tokens: int
    said_tokens: int  # tokens the model said to the calibration frames
    said_outside_grammar: int
    check_frames: int
    check_identical: int  # check frames answered the same with the trimmed head

    @property
    def head_params_removed(self) -> float:
        return 1.0 - self.kept_tokens / self.vocab_size


def grammar_tokens(vlm: DrivingVLM, scenes: int) -> set[int]:
    """Every token of the generated data's answers for `scenes` train scenes (no rendering needed)."""
    from owled_ros.data.scenes import SPLIT_SEEDS, generate_scene
    from owled_ros.data.targets import frame_answer, scene_qa

    tok, end = vlm.tokenizer, end_of_answer(vlm.tokenizer)
    ids: set[int] = set()
    for i in tqdm(range(scenes), desc="answer grammar", unit="scene", leave=False):
        scene = generate_scene(SPLIT_SEEDS["train"], i)
        for text in {frame_answer(scene), *(qa.answer for qa in scene_qa(scene))}:
            ids.update(tok(text + end, add_special_tokens=False)["input_ids"])
    return ids


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


@torch.no_grad()
def said_tokens(vlm: DrivingVLM, samples: list[VisualSample], max_new_tokens: int) -> set[int]:
    """The tokens the model picks, greedily, answering each sample's question and the node's frame question.

    Read from the head's own outputs: the last position's argmax of every call is the token
    greedy decoding takes. A row that finished early in its batch keeps computing, and its
    argmaxes are kept too: a superset, which only keeps a few rows more."""
    said: set[int] = set()

    def record(_module, _inputs, logits: torch.Tensor) -> None:
        said.update(logits[:, -1].argmax(-1).tolist())

    asks = [(s, q) for s in samples for q in dict.fromkeys((FRAME_QUESTION, s.question))]
    handle = vlm.lm.get_output_embeddings().register_forward_hook(record)
    try:
        for batch in tqdm(list(_batches(asks, BATCH)), desc="model answers", unit="batch", leave=False):
            vlm.generate([s.image for s, _ in batch], [s.state for s, _ in batch], [q for _, q in batch], max_new_tokens)
    finally:
        handle.remove()
    return said


def check_samples(n: int) -> list[VisualSample]:
    """`n` held-out val scenes with the node's question (never calibration scenes: those are train)."""
    from owled_ros.data.scenes import SPLIT_SEEDS, generate_scene, render_scene

    scenes = [generate_scene(SPLIT_SEEDS["val"], i) for i in range(n)]
    return [VisualSample(render_scene(s), FRAME_QUESTION, None, s.ego) for s in scenes]


def _answers(vlm: DrivingVLM, samples: list[VisualSample], max_new_tokens: int, desc: str) -> list[str]:
    texts: list[str] = []
    for batch in tqdm(list(_batches(samples, BATCH)), desc=desc, unit="batch", leave=False):
        texts += [g.text for g in vlm.generate([s.image for s in batch], [s.state for s in batch], [s.question for s in batch], max_new_tokens)]
    return texts


def trim_vlm_vocab(vlm: DrivingVLM, calib: CalibrationSet, grammar_scenes: int, check: list[VisualSample], max_new_tokens: int) -> TrimReport:
    """Trim `vlm`'s head in place to the tokens it says (module docstring); the report of what was kept and how it answers."""
    if output_tokens(vlm.lm.config):
        raise ValueError("its LM head is trimmed already (a trim needs an untrimmed head)")
    tok = vlm.tokenizer
    grammar = grammar_tokens(vlm, grammar_scenes)
    said = said_tokens(vlm, list(calib.visual), max_new_tokens)
    before = _answers(vlm, check, max_new_tokens, "check, full head")
    kept = grammar | said | set(tok.all_special_ids)
    vocab = int(vlm.lm.config.vocab_size)
    trim_output_head(vlm.lm, sorted(kept))
    after = _answers(vlm, check, max_new_tokens, "check, trimmed head")
    same = sum(a == b for a, b in zip(before, after))
    return TrimReport(len(kept), vocab, len(grammar), len(said), len(said - grammar), len(check), same)
