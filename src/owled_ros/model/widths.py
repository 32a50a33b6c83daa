"""Per-layer widths of a structurally pruned causal LM: recorded in its HF config, rebuilt at load.

A Llama-family decoder layer computes with whatever sizes its Linear layers have (the attention
reshapes to (-1, head_dim), the MLP multiplies whatever it gets), so a layer with fewer MLP
channels or fewer KV groups is the same module class with smaller matrices. HF configs hold
one `intermediate_size` and one head count for every layer, so the pruned sizes live in an
extra config field, `owled_layer_widths` (lists, one entry per layer). A loader builds the
model from the config without initialising weights, shrinks each layer to its widths, then
loads the safetensors. Models without that field load as before; a model pruned by whole
layers only needs no field at all (its `num_hidden_layers` says it).

The output head has a width too: a head trimmed to the tokens a driving model says
(`owled trim-vocab`, prune/output_vocab.py) keeps those rows only, and `owled_output_tokens`
lists their token ids.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:  # annotations only: the exported runtimes run without transformers' modeling code
    from transformers import PreTrainedModel

WIDTHS_FIELD = "owled_layer_widths"
OUTPUT_TOKENS_FIELD = "owled_output_tokens"


class KeptVocabHead(nn.Module):
    """The LM head's rows for a set of tokens, scattered back into full-vocabulary logits.

    Token ids, the tokenizer, `generate`, confidences and the exported deploy graphs keep their
    meaning. A token outside the set gets the dtype's lowest logit: probability 0, and finite,
    so a KL between two trimmed models stays finite."""

    def __init__(self, token_ids: Sequence[int], vocab_size: int, hidden_size: int, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.proj = nn.Linear(hidden_size, len(token_ids), bias=False, dtype=dtype, device=device)
        self.register_buffer("token_ids", torch.tensor(list(token_ids), dtype=torch.long, device=device), persistent=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        kept = self.proj(hidden)
        full = kept.new_full((*kept.shape[:-1], self.vocab_size), torch.finfo(kept.dtype).min)
        return full.scatter(-1, self.token_ids.expand_as(kept), kept)


def trim_output_head(lm: PreTrainedModel, token_ids: Sequence[int]) -> None:
    """Keep the head's rows of `token_ids` (an untied copy; the input embeddings stay whole) and record them in the config."""
    ids = sorted(set(int(t) for t in token_ids))
    vocab = lm.config.vocab_size
    if isinstance(lm.get_output_embeddings(), KeptVocabHead) or not ids or not 0 <= ids[0] <= ids[-1] < vocab:
        raise ValueError(f"a head trim needs token ids in [0, {vocab}) of an untrimmed head")
    weight = lm.get_output_embeddings().weight
    head = KeptVocabHead(ids, weight.shape[0], weight.shape[1], weight.dtype, weight.device)
    with torch.no_grad():
        head.proj.weight.copy_(weight[ids])
    lm.set_output_embeddings(head)
    lm.config.tie_word_embeddings = False
    setattr(lm.config, OUTPUT_TOKENS_FIELD, ids)


def output_tokens(config) -> list[int] | None:
    """The kept token ids of a trimmed head (None: the whole vocabulary)."""
    return getattr(config, OUTPUT_TOKENS_FIELD, None)


def shapes_recorded(config: dict) -> bool:
    """Whether a config.json (as a dict) records pruned layer widths or a trimmed head: such a model is built by `apply_widths`."""
    return WIDTHS_FIELD in config or OUTPUT_TOKENS_FIELD in config


@dataclass(frozen=True)
class LayerWidths:
    """Sizes of every decoder layer, in layer order."""

    intermediate_size: tuple[int, ...]
    num_attention_heads: tuple[int, ...]
    num_key_value_heads: tuple[int, ...]

    def to_dict(self) -> dict:
        return {k: list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "LayerWidths":
        return cls(*(tuple(int(x) for x in d[k]) for k in ("intermediate_size", "num_attention_heads", "num_key_value_heads")))


def head_dim(lm: PreTrainedModel) -> int:
    config = lm.config
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def measured_widths(lm: PreTrainedModel) -> LayerWidths:
    """The widths the decoder layers have now (read from their Linear shapes)."""
    hd = head_dim(lm)
    layers = list(lm.get_decoder().layers)
    return LayerWidths(
        tuple(layer.mlp.gate_proj.out_features for layer in layers),
        tuple(layer.self_attn.q_proj.out_features // hd for layer in layers),
        tuple(layer.self_attn.k_proj.out_features // hd for layer in layers),
    )


def record_widths(lm: PreTrainedModel) -> None:
    """Write the decoder's current widths into its config (after pruning), so the saved config rebuilds it.

    head_dim is written too: HF would otherwise derive it from hidden_size / num_attention_heads."""
    widths = measured_widths(lm)
    lm.config.head_dim = head_dim(lm)
    n = lm.config.num_hidden_layers
    uniform = (widths.intermediate_size == (lm.config.intermediate_size,) * n
               and widths.num_attention_heads == (lm.config.num_attention_heads,) * n
               and widths.num_key_value_heads == (lm.config.num_key_value_heads,) * n)
    if uniform:
        if hasattr(lm.config, WIDTHS_FIELD):
            delattr(lm.config, WIDTHS_FIELD)
    else:
        setattr(lm.config, WIDTHS_FIELD, widths.to_dict())


def config_widths(config) -> LayerWidths | None:
    d = getattr(config, WIDTHS_FIELD, None)
    return LayerWidths.from_dict(d) if d else None


def _resized(linear: nn.Linear, out_features: int, in_features: int) -> nn.Linear:
    """An uninitialised Linear of the new shape on the old one's device and dtype (weights are loaded next)."""
    if (linear.out_features, linear.in_features) == (out_features, in_features):
        return linear
    return nn.Linear(in_features, out_features, bias=linear.bias is not None, device=linear.weight.device, dtype=linear.weight.dtype)


def apply_widths(lm: PreTrainedModel) -> None:
    """Shrink a freshly built model's layers and head to the widths its config records (no-op without them)."""
    ids = output_tokens(lm.config)
    if ids:
        weight = lm.get_output_embeddings().weight
        lm.set_output_embeddings(KeptVocabHead(ids, lm.config.vocab_size, lm.config.hidden_size, weight.dtype, weight.device))
    widths = config_widths(lm.config)
    if widths is None:
        return
    hd, hidden = head_dim(lm), lm.config.hidden_size
    layers = list(lm.get_decoder().layers)
    if len(widths.intermediate_size) != len(layers):
        raise ValueError(f"{WIDTHS_FIELD} lists {len(widths.intermediate_size)} layers, the config has {len(layers)}")
    for layer, mid, heads, kv in zip(layers, widths.intermediate_size, widths.num_attention_heads, widths.num_key_value_heads):
        mlp, attn = layer.mlp, layer.self_attn
        mlp.gate_proj = _resized(mlp.gate_proj, mid, hidden)
        mlp.up_proj = _resized(mlp.up_proj, mid, hidden)
        mlp.down_proj = _resized(mlp.down_proj, hidden, mid)
        attn.q_proj = _resized(attn.q_proj, heads * hd, hidden)
        attn.k_proj = _resized(attn.k_proj, kv * hd, hidden)
        attn.v_proj = _resized(attn.v_proj, kv * hd, hidden)
        attn.o_proj = _resized(attn.o_proj, hidden, heads * hd)
