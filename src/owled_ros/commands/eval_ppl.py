"""`owled eval ppl`: Wikipedia perplexity of a model's LM (docs/design.md protocol)."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ppl", help="Wikipedia perplexity of the model's LM (512-token windows)")
    p.add_argument("--model", default="default", help="model directory, or 'default', or a plain HF causal LM directory")
    p.add_argument("--windows", type=int, default=64, help="evaluation windows, at most 64 (the protocol's cap)")
    p.add_argument("--out", default=None, help="also write the JSON to this file")


def run(args: argparse.Namespace) -> int:
    from owled_ros.commands.eval import emit
    from owled_ros.data.wiki import MAX_EVAL_WINDOWS
    from owled_ros.errors import OwledError
    from owled_ros.eval.perplexity import wiki_perplexity
    from owled_ros.model.checkpoint import load_vlm
    from owled_ros.model.lm import load_hf_lm, plain_lm_dir

    if not 1 <= args.windows <= MAX_EVAL_WINDOWS:
        raise OwledError(f"--windows must lie in [1, {MAX_EVAL_WINDOWS}], got {args.windows}")
    lm_dir = plain_lm_dir(args.model)
    if lm_dir is not None:
        lm, tokenizer = load_hf_lm(lm_dir)
    else:
        vlm = load_vlm(args.model)
        lm, tokenizer = vlm.lm, vlm.tokenizer
    result = wiki_perplexity(lm, tokenizer, args.windows)
    emit({"model": str(args.model), **result.to_dict()}, args.out)
    return 0
