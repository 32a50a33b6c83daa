"""The calibration pipeline, written once for every method: capture, observe, walk.

1. `capture` runs the real model on each calibration batch with every block's forward
   swapped for a recorder: block 0's input is kept, and each block's other arguments
   (attention mask, position embeddings, ...) are kept exactly as the model passed them.
   Recording every block, not only block 0, keeps per-layer arguments right (sliding-
   window layers get another mask); the recorders return their input unchanged and the
   last one raises, so no block computes and nothing after the blocks runs.
2. `walk` visits the blocks in order. For block k it runs all batches with hooks on the
   prunable layers (`observe`) that sum each layer's input statistics, hands them to a
   visitor (score, mask, prune), re-runs block k with its new weights, and the outputs
   replace the inputs as block k+1's inputs. Peak memory: the model, the captured
   block-0 inputs and one working set of block activations, never the whole model's.
   A `BlockStore` that streams (prune/stream.py) loads block k just before and writes it
   out just after, so the model's weights need not be in memory at all.
3. With dtype "bf16" the blocks run under autocast: matrix products in bf16, the hidden
   states and every statistic in fp32. On CPUs with bf16 dot products (cpu.py) that is
   1.6x faster a block than fp32 (BENCHMARKS 4); the pruned weights stay fp32.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from owled_ros.heap import release_free_memory
from owled_ros.prune.attention import calibration_attention
from owled_ros.prune.config import CALIB_INPUTS
from owled_ros.observe import LayerStats, StopForward, observe
from owled_ros.prune.layers import Block
from owled_ros.prune.spill import Activations


class _Stop(Exception):
    """Raised by the last recorder: the model's forward ends there."""


@dataclass
class BlockCall:
    """How the model called one block for one batch, minus the hidden state."""

    args: tuple
    kwargs: dict


@dataclass
class Captured:
    hidden: Activations  # block 0's input, one per batch (spilled to files beyond --max-memory, prune/spill.py)
    calls: list[list[BlockCall]]  # [block][batch]


@torch.no_grad()
def capture(blocks: list[nn.Module], run_model: Callable[[Any], object], batches: Iterable[Any]) -> Captured:
    """Inputs of block 0 and every block's call arguments, for each batch given to `run_model`."""
    captured = Captured(Activations(), [[] for _ in blocks])

    def recorder(k: int) -> Callable:
        def forward(hidden: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            if k == 0:
                captured.hidden.append(hidden.detach())
            captured.calls[k].append(BlockCall(args, kwargs))
            if k == len(blocks) - 1:
                raise _Stop
            return hidden

        return forward

    for k, block in enumerate(blocks):
        block.forward = recorder(k)
    try:
        for batch in batches:
            try:
                run_model(batch)
            except _Stop:
                pass
            else:
                raise RuntimeError("the model's forward never reached its last block")
    finally:
        for block in blocks:
            del block.forward
    return captured


@torch.no_grad()
def run_block(block: nn.Module, hidden: Activations, calls: list[BlockCall], replace: bool) -> None:
    """Run every batch through the block; with `replace`, its outputs become the next inputs."""
    for i, (h, call) in enumerate(zip(hidden, calls)):
        try:
            out = block(h, *call.args, **call.kwargs)
        except StopForward:
            continue
        if replace:
            hidden[i] = out


Visitor = Callable[[int, Block, dict[str, LayerStats]], None]


class BlockStore:
    """Where blocks' weights live between visits; this base keeps them in memory (nothing to do)."""

    def load(self, block: Block) -> None:
        """Make the block's weights usable (called before the block runs)."""

    def unload(self, block: Block, pruned: bool) -> None:
        """Done with the block for this walk; `pruned`: its weights are final."""

    def finish(self, blocks: list[Block]) -> None:
        """The part is done: make every block's final weights readable by `reader` (kept blocks too)."""

    def reader(self) -> BlockStore:
        """A store that loads the blocks' final weights (after a walk that wrote them elsewhere)."""
        return self


RESIDENT = BlockStore()


def compute_dtype(dtype: str, device: torch.device) -> AbstractContextManager:
    """The context the calibration forwards run in (see the module doc, 3.)."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()


def walk(
    blocks: list[Block],
    captured: Captured,
    visit: Visitor,
    *,
    prunes: bool,
    hessian: bool,
    desc: str,
    dtype: str = "fp32",
    store: BlockStore = RESIDENT,
    consume: bool = False,
    inputs: str = "pruned",
) -> None:
    """Sequential pass: observe block k on all batches, `visit` it, propagate its outputs.

    A visitor that only reads (OWL's outlier pass, `prunes=False`) costs one run per block,
    which observes and propagates at once; one that prunes costs two: observe the inputs
    (stopping once the last layer has its input), then propagate them through the pruned block,
    unless `inputs` is "dense": then every block sees the dense model's activations, one run
    per block (llm-compressor's `propagate_error=False`). `captured` itself is never modified, so
    several walks can share one capture, unless `consume`: then its inputs are replaced as
    the walk goes (the capture's last use: one set of activations in memory, not two).
    """
    if inputs not in CALIB_INPUTS:
        raise ValueError(f"inputs must be one of {CALIB_INPUTS}, got {inputs!r}")
    hidden = captured.hidden if consume else captured.hidden.copy()
    context = compute_dtype(dtype, hidden[0].device)
    for k, block in enumerate(tqdm(blocks, desc=desc, unit="block")):
        last = k == len(blocks) - 1
        # the next block sees this one's outputs after the visit pruned it: a second run
        after_visit = prunes and bool(block.layers) and inputs == "pruned"
        store.load(block)
        outputs_needed = not (after_visit or last)
        stop = None if outputs_needed else block.module
        with observe(block.layers, hessian, stop) as stats, context, calibration_attention(block.module):
            run_block(block.module, hidden, captured.calls[k], replace=outputs_needed)
        visit(k, block, stats)
        if after_visit and not last:
            del stats
            release_free_memory()  # the observing run's freed temporaries, before the second run adds its own
            with context, calibration_attention(block.module):
                run_block(block.module, hidden, captured.calls[k], replace=True)
        store.unload(block, prunes)
        release_free_memory()
