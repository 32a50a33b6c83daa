"""Prune a DrivingVLM: encoder first, then the LM, each with its own target.

The encoder's blocks are `encoder.blocks()` (EfficientNet: stem, 16 MBConv, head;
CLIP/SigLIP: encoder layers), calibrated with the frames. The LM's blocks are its
decoder layers, calibrated with what the LM really receives: for image sources the
DrivingVLM's input embeddings (visual tokens of the already pruned encoder + prompt
[+ answer]), one sample per batch so no padding enters the statistics; for text
sources plain token windows, eight per batch. Text sources carry no images, so the
encoder then stays dense.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from transformers import PreTrainedModel

from owled_ros.data.calibration import CalibrationSet
from owled_ros.errors import OwledError
from owled_ros.model.vlm import DrivingVLM
from owled_ros.prune.apply import PartResult, prune_part
from owled_ros.prune.calibrate import RESIDENT, BlockStore, Captured, capture, run_block
from owled_ros.prune.config import PruneConfig
from owled_ros.observe import run_sample
from owled_ros.prune.layers import Block, make_blocks

IMAGE_BATCH = 8
# Two 512-token windows per block call: the same time a block as eight on one thread, a quarter of the
# transient activations and a lower peak RSS (docs/pruning-comparison.md, Memory).
WINDOW_BATCH = 2


def encoder_blocks(vlm: DrivingVLM) -> list[Block]:
    return make_blocks(vlm, [module for _name, module in vlm.encoder.blocks()])


def lm_blocks(vlm: DrivingVLM) -> list[Block]:
    return make_blocks(vlm, list(vlm.lm.get_decoder().layers))


def _chunks(items: list | torch.Tensor, size: int) -> Iterator:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def activation_bytes(vlm: DrivingVLM, calib: CalibrationSet) -> int:
    """About the size of the larger capture (encoder or LM inputs, fp32): what --max-memory weighs
    against. Visual samples: the image tokens plus the prompt and answer, 64 tokens of template."""
    h = vlm.lm.config.hidden_size
    if calib.windows is not None:
        return calib.windows.numel() * h * 4
    n = len(calib.visual)
    text = sum(len(vlm.tokenizer(s.question + " " + (s.answer or "")).input_ids) for s in calib.visual)
    lm = (n * (vlm.projector.config.n_tokens + 64) + text) * h * 4
    width, height = vlm.encoder.config.image_size
    encoder = n * 3 * width * height * 4 * 4  # the first block's input is about 4x the pixels (a ViT: patches x width)
    return max(lm, encoder)


def capture_encoder(vlm: DrivingVLM, calib: CalibrationSet) -> Captured:
    images = [s.image for s in calib.visual]
    batches = (vlm.encoder.preprocess(chunk).to(vlm.device) for chunk in _chunks(images, IMAGE_BATCH))
    return capture([m for _n, m in vlm.encoder.blocks()], vlm.encoder, batches)


def capture_windows(lm: PreTrainedModel, windows: torch.Tensor) -> Captured:
    """Decoder-layer inputs for text windows, eight per batch."""
    decoder = lm.get_decoder()
    batches = (w.to(lm.device) for w in _chunks(windows, WINDOW_BATCH))
    return capture(list(decoder.layers), lambda ids: decoder(input_ids=ids, use_cache=False), batches)


def capture_lm(vlm: DrivingVLM, calib: CalibrationSet, encoder_store: BlockStore = RESIDENT) -> Captured:
    if calib.windows is not None:
        return capture_windows(vlm.lm, calib.windows)
    layers = list(vlm.lm.get_decoder().layers)
    if encoder_store is RESIDENT:
        return capture(layers, lambda sample: run_sample(vlm, sample), calib.visual)
    tokens = encoder_tokens(vlm, calib, encoder_store.reader())
    return capture(layers, lambda i: run_sample(vlm, calib.visual[i], tokens[i]), range(len(tokens)))


def encoder_tokens(vlm: DrivingVLM, calib: CalibrationSet, store: BlockStore) -> list[torch.Tensor]:
    """Each calibration image's tokens through the encoder whose blocks `store` holds, one block in
    memory at a time; one image per batch, as `run_sample` encodes it, so the numbers are the same."""
    blocks = encoder_blocks(vlm)
    pixels = (vlm.encoder.preprocess([s.image]).to(vlm.device) for s in calib.visual)
    captured = capture([b.module for b in blocks], vlm.encoder, pixels)
    hidden = captured.hidden
    for k, block in enumerate(blocks[: vlm.encoder.blocks_used()]):
        store.load(block)
        run_block(block.module, hidden, captured.calls[k], replace=True)
        store.unload(block, False)
    return [vlm.encoder.tokens_from_hidden(h) for h in hidden]


def prune_lm(lm: PreTrainedModel, windows: torch.Tensor, config: PruneConfig) -> PartResult:
    """Prune a plain HF causal LM in place on text windows (config.llm_sparsity)."""
    with torch.no_grad():
        return prune_part("llm", make_blocks(lm, list(lm.get_decoder().layers)), lambda: capture_windows(lm, windows), config.llm_sparsity, config)


def prune_vlm(vlm: DrivingVLM, calib: CalibrationSet, config: PruneConfig, llm_store: BlockStore = RESIDENT,
              encoder_store: BlockStore = RESIDENT) -> list[PartResult]:
    """Prune in place; returns what each part's blocks were assigned. The stores say where each part's
    blocks live (prune/stream.py streams them from the files)."""
    if config.encoder_sparsity > 0 and not calib.has_images:
        raise OwledError(f"calibration source {calib.source!r} has no images: the encoder cannot be calibrated (use --encoder-sparsity 0)")
    with torch.no_grad():
        blocks = encoder_blocks(vlm)
        encoder = prune_part("encoder", blocks, lambda: capture_encoder(vlm, calib), config.encoder_sparsity, config, store=encoder_store)
        encoder_store.finish(blocks)
        blocks = lm_blocks(vlm)
        llm = prune_part("llm", blocks, lambda: capture_lm(vlm, calib, encoder_store), config.llm_sparsity, config, store=llm_store)
        llm_store.finish(blocks)
    return [encoder, llm]
