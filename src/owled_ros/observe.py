"""Input statistics of layers over calibration passes, for pruning and for deploy alike.

`observe` hooks a set of layers and sums each one's input over every calibration row: the
squared norms Wanda scores with, x x^T for SparseGPT, and max |x_j| for SmoothQuant. Pruning
(prune/calibrate.py walks the blocks with it) and int8 deploy (deploy/smoothquant.py) run the
model on the same calibration samples (`run_sample`) through the same hooks.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from owled_ros.data.calibration import VisualSample
from owled_ros.model.vlm import DrivingVLM


def input_rows(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A layer's input as [rows, in], in its own dtype: tokens for a Linear, pixels for a pointwise conv."""
    if isinstance(module, nn.Conv2d):
        x = x.movedim(1, -1)
    return x.reshape(-1, x.shape[-1])


@dataclass
class LayerStats:
    """Sums over every calibration row x (a token, or a pixel of a conv input)."""

    sq_sum: torch.Tensor  # (in,): sum of x_j^2, so ||X_j||_2 = sqrt(sq_sum)
    hessian: torch.Tensor | None = None  # (in, in): sum of x x^T (SparseGPT only)
    rows: int = 0
    absmax: torch.Tensor | None = None  # (in,): max |x_j| (SmoothQuant's activation range), if asked for

    @property
    def norm(self) -> torch.Tensor:
        return self.sq_sum.sqrt()

    def add(self, x: torch.Tensor, absmax: bool = False) -> None:
        self.merge(InputSums.of(x, self.hessian is not None, absmax))

    def merge(self, sums: InputSums) -> None:
        self.sq_sum += sums.sq_sum
        if sums.absmax is not None:
            self.absmax = sums.absmax if self.absmax is None else torch.maximum(self.absmax, sums.absmax)
        if self.hessian is not None:
            self.hessian += sums.xtx
        self.rows += sums.rows


CHUNK_ROWS = 256  # rows of an input summed at once for the per-column sums: <= 1.5 MB in fp32 for 1536 features


@dataclass
class InputSums:
    """One call's sums over the rows of one input; layers reading the same input (q/k/v, gate/up) share them."""

    sq_sum: torch.Tensor
    absmax: torch.Tensor | None
    xtx: torch.Tensor | None
    rows: int

    @classmethod
    def of(cls, x: torch.Tensor, hessian: bool, absmax: bool) -> InputSums:
        """Sums of the rows x [rows, in], in fp32 whatever x's dtype, a chunk of rows at a time: a
        chunk's fp32 copy stays in cache, which made the statistics of a bf16 walk 4x cheaper."""
        n = x.shape[1]
        sq_sum = torch.zeros(n, device=x.device)
        peak = torch.zeros(n, device=x.device) if absmax else None  # only SmoothQuant asks for it
        with torch.autocast(x.device.type, enabled=False):  # the hooks run inside a bf16 walk's autocast
            for chunk in x.split(CHUNK_ROWS):
                c = chunk.float()
                sq_sum += (c * c).sum(0)
                if peak is not None:
                    peak = torch.maximum(peak, c.abs().amax(0))
            xtx = gram(x.float()) if hessian else None
        return cls(sq_sum, peak, xtx, x.shape[0])


GRAM_TILES = 4


def gram(c: torch.Tensor, tiles: int = GRAM_TILES) -> torch.Tensor:
    """c^T c (fp32) from its upper tiles only, mirrored. Why: SparseGPT's Hessians are most of its extra
    cost over Wanda, and x x^T is symmetric: four column tiles do 10 of the 16 tile products, and all
    rows in one product (not CHUNK_ROWS at a time) run the matrix kernel at full speed; together 2x
    faster on a 1536-wide input of 1024 rows (BENCHMARKS 3)."""
    n = c.shape[1]
    out = torch.empty(n, n, dtype=c.dtype, device=c.device)
    bounds = [i * n // tiles for i in range(tiles + 1)]
    for lo, hi in zip(bounds, bounds[1:]):
        rows = c[:, lo:hi].T @ c[:, lo:]
        out[lo:hi, lo:] = rows
        out[hi:, lo:hi] = rows[:, hi - lo:].T
    return out


@contextmanager
def observe(
    layers: dict[str, nn.Module], hessian: bool, stop_when_seen: nn.Module | None = None, absmax: bool = False
) -> Iterator[dict[str, LayerStats]]:
    """Accumulate LayerStats of each layer's input (max |x_j| too with `absmax`) while the block runs inside the context.

    With `stop_when_seen` (the block), each of its forwards ends with `StopForward` as soon as
    every layer has been given its input: a statistics-only pass skips what comes after
    (for a decoder layer, down_proj's product and the residual add).
    """
    stats: dict[str, LayerStats] = {}
    seen: set[str] = set()
    last: list = [None, None]  # the input seen last and its sums
    handles = []

    def sums_of(module: nn.Module, x: torch.Tensor) -> InputSums:
        if last[0] is not x:
            last[:] = [x, InputSums.of(input_rows(module, x), hessian, absmax)]
        return last[1]

    for name, layer in layers.items():
        n_in = layer.weight[0].numel()
        stats[name] = LayerStats(torch.zeros(n_in), torch.zeros(n_in, n_in) if hessian else None)

        def hook(module: nn.Module, inputs: tuple, s: LayerStats = stats[name], name: str = name) -> None:
            s.merge(sums_of(module, inputs[0]))
            if stop_when_seen is not None:
                seen.add(name)
                if len(seen) == len(stats):
                    raise StopForward

        handles.append(layer.register_forward_pre_hook(hook))
    if stop_when_seen is not None:
        handles.append(stop_when_seen.register_forward_pre_hook(lambda *_: seen.clear()))
    try:
        yield stats
    finally:
        last.clear()
        for h in handles:
            h.remove()


class StopForward(Exception):
    """Raised by `observe(stop_when_seen=...)` once a forward has given every layer its input."""


def run_sample(vlm: DrivingVLM, sample: VisualSample, tokens: torch.Tensor | None = None) -> None:
    """One calibration sample through the LM's decoder, as the LM sees it at run time (+ answer).
    `tokens`: the image's encoder tokens when they were computed apart (a streamed encoder)."""
    visual = vlm.visual_embeds([sample.image]) if tokens is None else vlm.projector(tokens)
    answers = [sample.answer] if sample.answer is not None else None
    embeds, mask, _spans = vlm.lm_inputs(visual, [sample.state], [sample.question], answers, left_pad=False)
    vlm.lm.get_decoder()(inputs_embeds=embeds, attention_mask=mask, use_cache=False)
