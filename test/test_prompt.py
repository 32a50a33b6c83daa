"""The prompt format picks ChatML by a token lookup, for the default tokenizer and for others."""
from __future__ import annotations

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from owled_ros.model.prompt import end_of_answer, split_prompt, uses_chatml
from tiny_models import tokenizer


def plain_tokenizer(unk: bool) -> PreTrainedTokenizerFast:
    vocab = {"[UNK]": 0, "stop": 1} if unk else {"stop": 0}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]") if unk else models.BPE(vocab, []))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]" if unk else None, eos_token="stop")


def test_default_tokenizer_is_chatml() -> None:
    tok = tokenizer()
    assert uses_chatml(tok) and end_of_answer(tok) == "<|im_end|>"
    before, after = split_prompt(tok, None, "Q?")
    assert before == "<|im_start|>user\n" and after.endswith("<|im_start|>assistant\n")


def test_tokenizers_without_chatml_fall_back() -> None:
    for unk in (True, False):  # an unknown token maps to the unk id, or to None without one
        tok = plain_tokenizer(unk)
        assert not uses_chatml(tok)
        assert end_of_answer(tok) == "stop"
        assert split_prompt(tok, None, "Q?") == ("User: ", "\nSpeed unknown. Q?\nAssistant: ")
