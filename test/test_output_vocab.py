"""`owled trim-vocab`: the trimmed head scores its tokens as the full head did and nothing else,
keeps every token the model said to its calibration frames, round-trips fp32 and int8, and bad
requests fail with one line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from owled_ros.cli import main
from owled_ros.data.calibration import load_calibration
from owled_ros.model.checkpoint import load_vlm, save_vlm
from owled_ros.model.int8 import Int8Linear
from owled_ros.model.prompt import FRAME_QUESTION
from owled_ros.model.widths import KeptVocabHead, output_tokens, trim_output_head
from tiny_models import save_tiny_vlm, tiny_llama

TOKENS = "6"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    path = save_tiny_vlm(tmp_path_factory.mktemp("vocab") / "tiny")
    (path / "prune_report.json").write_text('{"method": "magnitude"}')  # as if pruned: the trimmed model must carry it
    return path


@pytest.fixture(scope="module")
def trimmed(tiny: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vocab") / "trimmed"
    assert main(["trim-vocab", "--model", str(tiny), "--calib-samples", "3", "--grammar-scenes", "20", "--check-frames", "2",
                 "--max-new-tokens", TOKENS, "--out", str(out)]) == 0
    return out


def test_the_trimmed_head_gives_its_tokens_the_full_logits_and_the_rest_nothing() -> None:
    lm = tiny_llama(vocab=300, layers=1)
    x = torch.randint(0, 300, (2, 5))
    with torch.no_grad():
        full = lm(x).logits
        kept = [3, 7, 100, 299]
        trim_output_head(lm, kept)
        trimmed = lm(x).logits
    assert trimmed.shape == full.shape
    assert torch.allclose(trimmed[..., kept], full[..., kept], atol=1e-6)
    others = torch.ones(300, dtype=torch.bool)
    others[kept] = False
    assert (trimmed[..., others] == torch.finfo(trimmed.dtype).min).all()
    assert set(trimmed.softmax(-1).argmax(-1).flatten().tolist()) <= set(kept)
    assert not lm.config.tie_word_embeddings and output_tokens(lm.config) == kept
    assert lm.get_input_embeddings().weight.shape[0] == 300  # inputs keep every token
    with pytest.raises(ValueError, match="untrimmed head"):
        trim_output_head(lm, [1, 2])


def test_the_command_keeps_what_the_model_said_and_reports_it(tiny: Path, trimmed: Path) -> None:
    """Every token the model said to the calibration frames stays: it answers them word for word as before."""
    full, cut = load_vlm(tiny), load_vlm(trimmed)
    assert isinstance(cut.lm.get_output_embeddings(), KeptVocabHead)
    report = json.loads((trimmed / "trim_report.json").read_text())
    ids = output_tokens(cut.lm.config)
    assert report["kept_tokens"] == len(ids) == cut.lm.get_output_embeddings().proj.out_features < report["vocab_size"]
    assert report["check_frames"] == 2 and 0 <= report["check_identical"] <= 2
    assert cut.meta["output_vocab"]["kept_tokens"] == len(ids)
    assert (trimmed / "prune_report.json").read_text() == (tiny / "prune_report.json").read_text()
    for s in load_calibration("scenes", 3, full.tokenizer, 2).visual:
        for q in (FRAME_QUESTION, s.question):
            before = full.generate([s.image], [s.state], [q], int(TOKENS))[0]
            assert cut.generate([s.image], [s.state], [q], int(TOKENS))[0].text == before.text


def test_a_trimmed_model_deploys_int8_with_an_int8_head(trimmed: Path, tmp_path: Path) -> None:
    out = tmp_path / "int8"
    assert main(["deploy", "--model", str(trimmed), "--backend", "torch", "--calib-samples", "2", "--gate-frames", "2", "--out", str(out)]) == 0
    vlm, fp32 = load_vlm(out), load_vlm(out, precision="fp32")
    head = vlm.lm.get_output_embeddings()
    assert isinstance(head, KeptVocabHead) and isinstance(head.proj, Int8Linear)
    assert output_tokens(vlm.lm.config) == output_tokens(fp32.lm.config)
    s = load_calibration("scenes", 1, vlm.tokenizer, 2).visual[0]
    assert vlm.generate([s.image], [s.state], [FRAME_QUESTION], int(TOKENS))[0].text
    assert main(["trim-vocab", "--model", str(out), "--out", str(tmp_path / "again")]) == 2  # trim the fp32 model, then deploy


def test_bad_requests_are_one_line_and_exit_2(tiny: Path, trimmed: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    def fails(argv: list[str], needle: str) -> None:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err

    out = str(tmp_path / "out")
    fails(["trim-vocab", "--model", str(tiny), "--out", str(tiny)], "already exists")
    fails(["trim-vocab", "--model", str(tiny), "--calib", "wiki", "--out", out], "no frames")
    fails(["trim-vocab", "--model", str(tiny), "--calib-samples", "0", "--out", out], "--calib-samples must be at least 1")
    fails(["trim-vocab", "--model", str(trimmed), "--calib-samples", "1", "--grammar-scenes", "1", "--check-frames", "0",
           "--max-new-tokens", "1", "--out", out], "trimmed already")
    fails(["recover", "--model", str(trimmed), "--teacher", str(tiny), "--steps", "1", "--scenes", "2", "--batch", "1", "--out", out],
          "its LM head is trimmed")
    assert not Path(out).exists()
    vlm = load_vlm(tiny)
    save_vlm(vlm, tmp_path / "again")  # an untrimmed model still saves without the field
    assert "owled_output_tokens" not in json.loads((tmp_path / "again" / "lm" / "config.json").read_text())
