"""Prune a plain HF causal LM or a driving VLM straight from its safetensors files, one block in memory.

Why: the sequential calibration needs one block plus the activations (docs/design.md), but a
loaded model holds every weight, and the fp32 weights (540 MB for SmolLM2-135M, 28 GB for a
7B LLaVA) are more than the whole job's activations. Here the model is a skeleton without
weights (accelerate's `init_empty_weights`; buffers such as the rotary frequencies stay real).
The weights outside the blocks are read for the capture, written out first and dropped; each
block is read from the source files when the walk reaches it and, once pruned, written to a
shard of its own and dropped. An LM is written as a standard sharded HF checkpoint
(`model.safetensors.index.json`) that `from_pretrained` loads.

A VLM (an owled directory, `open_vlm_dir`, or a native LLaVA one, `open_llava_dir`) goes the
same way: a CLIP/SigLIP vision tower block by block, then the LM decoder layer by decoder
layer (LoRA merged as it is read). The LM's calibration samples need the pruned tower's
tokens; those are computed by reading its pruned blocks back one at a time
(prune/vlm.encoder_tokens). An EfficientNet encoder (5 M weights in the default model) and
the projector are pruned and saved in memory. Weights keep the dtype they are stored in on
disk; each block is computed in fp32 while it is in memory.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from owled_ros.data.calibration import CalibrationSet
from owled_ros.errors import OwledError
from owled_ros.fsutil import staged_dir
from owled_ros.model.assets import efficientnet_lite0_pth
from owled_ros.model.checkpoint import CONFIG_NAME, FORMAT, WHEEL_ENCODER, WHEEL_LM, read_model_config
from owled_ros.model.encoders import EncoderConfig, HFVisionEncoder, build_encoder
from owled_ros.model.lm import check_hf_dir, default_lm_dir
from owled_ros.model.lora import LoraConfig, apply_lora_delta
from owled_ros.model.ood import OOD_FILE
from owled_ros.model.projector import MLPProjector, ProjectorConfig
from owled_ros.model.vlm import DrivingVLM
from owled_ros.model.weight_files import INDEX_NAME, read_tensors, tensor_names, weight_files
from owled_ros.prune.apply import prune_part
from owled_ros.prune.calibrate import RESIDENT, BlockStore
from owled_ros.prune.config import PruneConfig
from owled_ros.prune.layers import Block, make_blocks
from owled_ros.prune.memory import MemorySampler
from owled_ros.prune.report import ZeroCounts, build_report, count_zeros
from owled_ros.prune.save import PRUNED_META, write_report
from owled_ros.prune.vlm import capture_windows, encoder_blocks, lm_blocks, prune_vlm

LM_ROOT = "lm."  # a DrivingVLM's LM tensors are named "lm.<name in the LM's files>"

ENCODER_ROOT = "encoder."


def _compute_copy(t: torch.Tensor) -> torch.Tensor:
    """Calibration math runs in fp32 whatever the stored dtype (one layer at a time, so bf16 storage costs nothing)."""
    return t.float() if t.is_floating_point() else t


class LayerFiles(BlockStore):
    """Blocks read from the source checkpoint on `load`; pruned ones written to shards on `unload`.

    `files`: tensor name, as the modules name them from the model's root, -> the file holding it;
    `keys` the name it has in that file where it differs (a LLaVA checkpoint's own layout).
    `root`: the prefix of this part in the model ("lm." for a VLM's LM), which the written
    names drop. `lora`: a LoRA delta (state, config), in the LM's own names, merged into each
    block as it is read, the way `load_vlm` merges it into the whole LM. Each tensor is written
    back in its stored dtype.
    """

    def __init__(self, files: dict[str, Path], out_dir: Path | None, shards: int, root: str = "",
                 lora: tuple[dict[str, torch.Tensor], LoraConfig] | None = None, keys: dict[str, str] | None = None) -> None:
        self.files = {n: f for n, f in files.items() if n.startswith(root)}
        self.out_dir, self.shards, self.root, self.lora, self.keys = out_dir, shards, root, lora, keys or {}
        self.weight_map: dict[str, str] = {}
        self.stored: dict[str, torch.dtype] = {}
        self.total_bytes = 0
        self.counts: ZeroCounts = {}
        self.written: set[str] = set()  # blocks written out

    def load(self, block: Block) -> None:
        prefix = block.name + "."
        tensors = read_tensors(self.files, [n for n in self.files if n.startswith(prefix)], self.keys)
        self.stored.update((n, t.dtype) for n, t in tensors.items())
        block.module.load_state_dict({n[len(prefix):]: _compute_copy(t) for n, t in tensors.items()}, strict=True, assign=True)
        if self.lora is not None:
            state, lora_config = self.lora
            own = prefix[len(self.root):]
            delta = {n[len(own):]: t for n, t in state.items() if n.startswith(own)}
            if delta:
                apply_lora_delta(block.module, delta, lora_config)

    def write(self, tensors: dict[str, torch.Tensor]) -> None:
        """Tensors named from the model's root, as one new shard named from this part's root."""
        assert self.out_dir is not None, "a reader store writes nothing"
        shard = f"model-{len(set(self.weight_map.values())) + 1:05d}-of-{self.shards:05d}.safetensors"
        save_file({n[len(self.root):]: t.contiguous() for n, t in tensors.items()}, str(self.out_dir / shard), metadata={"format": "pt"})
        self.weight_map.update((n[len(self.root):], shard) for n in tensors)
        self.total_bytes += sum(t.numel() * t.element_size() for t in tensors.values())

    def unload(self, block: Block, pruned: bool) -> None:
        if pruned and self.out_dir is not None:
            prefix = block.name + "."
            self.write({prefix + n: t.to(self.stored.get(prefix + n, t.dtype)) for n, t in block.module.state_dict().items()})
            for name, layer in block.layers.items():
                self.counts[name] = (int((layer.weight == 0).sum()), layer.weight.numel())
            self.written.add(block.name)
        block.module.to("meta")

    def finish(self, blocks: list[Block]) -> None:
        """Write the blocks no walk wrote (a part left dense, blocks without prunable layers) as they are, then the index."""
        for block in blocks:
            if block.name not in self.written:
                self.load(block)
                self.unload(block, True)
        assert self.out_dir is not None
        index = {"metadata": {"total_size": self.total_bytes}, "weight_map": dict(sorted(self.weight_map.items()))}
        (self.out_dir / INDEX_NAME).write_text(json.dumps(index, indent=2))

    def write_rest(self, part: torch.nn.Module, blocks: list[Block]) -> None:
        """Write this part's weights outside `blocks` (embeddings, norms) as stored and load them into `part`'s
        skeleton: fp32 copies, except embedding tables, which stay as stored (bf16 halves a 7B LM's 0.5 GB
        table) and whose lookups are cast to fp32, the same numbers."""
        prefixes = tuple(b.name + "." for b in blocks)
        rest = read_tensors(self.files, [n for n in self.files if not n.startswith(prefixes)], self.keys)
        self.write(rest)
        tables = {f"{n}.weight": m for n, m in part.named_modules() if isinstance(m, torch.nn.Embedding)}
        state = {n[len(self.root):]: t for n, t in rest.items()}
        part.load_state_dict({n: t if n in tables else _compute_copy(t) for n, t in state.items()}, strict=False, assign=True)
        for name, table in tables.items():
            if name in state and state[name].dtype != torch.float32:
                table.register_forward_hook(lambda _m, _args, out: out.float())

    def reader(self) -> LayerFiles:
        """A store that reads the blocks back from the shards written so far (and writes nothing)."""
        assert self.out_dir is not None
        return LayerFiles({self.root + n: self.out_dir / shard for n, shard in self.weight_map.items()}, None, 0, self.root,
                          keys={self.root + n: n for n in self.weight_map})

    def copy_side_files(self, src: Path) -> None:
        """config.json, tokenizer and generation files of the source LM directory."""
        assert self.out_dir is not None
        for file in src.iterdir():
            if file.is_file() and file.suffix != ".safetensors" and file.name != INDEX_NAME:
                shutil.copy2(file, self.out_dir / file.name)


def _skeleton_lm(config) -> torch.nn.Module:
    """A causal LM of `config` (a transformers config) without weights."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights(include_buffers=False):
        lm = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return lm.eval()


def _hf_config(src: Path):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(src, local_files_only=True, trust_remote_code=False)


def _check_files(src: Path, files: dict[str, Path], blocks: list[Block]) -> None:
    """Every block weight present, every shard whole: refuse before any work (nothing written yet)."""
    for b in blocks:
        for n, _ in b.module.named_parameters():
            if f"{b.name}.{n}" not in files:
                raise OwledError(f"{src}: weight {b.name}.{n} missing from its safetensors files")
    for file in sorted(set(files.values())):
        tensor_names(file)


def _compact_embedding(lm: torch.nn.Module, windows: torch.Tensor) -> torch.Tensor:
    """Keep only the embedding rows the windows use; returns the windows renumbered to them. The capture
    needs no more, and the whole table (108 MB in fp32 for SmolLM2-135M) is then never in memory
    together with the captured activations (BENCHMARKS 3)."""
    table = lm.get_input_embeddings()
    used, ids = torch.unique(windows, return_inverse=True)
    table.weight = torch.nn.Parameter(table.weight[used], requires_grad=False)  # a new parameter: a tied head keeps the old
    table.num_embeddings = len(used)
    return ids


def prune_lm_dir(src: Path, windows: torch.Tensor, config: PruneConfig, out: Path, calibration: dict) -> dict:
    """Prune the LM in `src` to `out` (config.llm_sparsity); returns the prune report, also written to `out`."""
    start = time.perf_counter()
    check_hf_dir(src, "causal LM")
    files = weight_files(src)
    lm = _skeleton_lm(_hf_config(src))
    blocks = make_blocks(lm, list(lm.get_decoder().layers))
    _check_files(src, files, blocks)
    with MemorySampler() as memory, staged_dir(out) as model_dir, torch.no_grad():
        model_dir.mkdir()
        store = LayerFiles(files, model_dir, shards=len(blocks) + 1)
        store.write_rest(lm, blocks)
        captured = None
        if config.method != "magnitude" or config.ratios != "uniform":
            ids = _compact_embedding(lm, windows)
            lm.get_output_embeddings().to("meta")  # written; a tied head still held the full table
            captured = capture_windows(lm, ids)
        for module in (lm.get_input_embeddings(), lm.get_output_embeddings()):
            module.to("meta")  # the capture was their last use
        part = prune_part("llm", blocks, lambda: captured, config.llm_sparsity, config, store=store)
        store.finish(blocks)
        store.copy_side_files(src)
        memory.sample()
        report = build_report(config, [part], calibration, time.perf_counter() - start, store.counts, memory.peaks)
        write_report(report, model_dir)
    return report


@dataclass
class StreamedVLM:
    """A VLM directory opened for a streamed prune: the LM (and an HF vision tower) skeletons whose weights
    stay in `files`; an EfficientNet encoder and the projector in memory."""

    src: Path
    config: dict  # the owled_vlm.json of the pruned directory, less where its weights are
    vlm: DrivingVLM
    files: dict[str, Path]  # DrivingVLM tensor name -> the file holding it, for the parts that stream
    keys: dict[str, str]  # DrivingVLM tensor name -> its key in that file, where they differ
    lora: tuple[dict[str, torch.Tensor], LoraConfig] | None
    lm_dir: Path | None  # the HF directory whose config and tokenizer files the pruned LM keeps (None: write them)

    @property
    def streams_encoder(self) -> bool:
        return isinstance(self.vlm.encoder, HFVisionEncoder)


def _skeleton_encoder(config: EncoderConfig) -> HFVisionEncoder:
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        encoder = HFVisionEncoder(config)
    return encoder


def _rooted(root: str, files: dict[str, Path]) -> tuple[dict[str, Path], dict[str, str]]:
    return {root + n: f for n, f in files.items()}, {root + n: n for n in files}


def _encoder_files(src: Path, weights: str) -> dict[str, Path]:
    """An HF tower's weights in an owled directory: one safetensors file or a directory of shards."""
    path = src / weights
    return weight_files(path) if path.is_dir() else {n: path for n in tensor_names(path)}


def _projector(src: Path, config: dict) -> MLPProjector:
    projector_file = src / "projector.safetensors"
    if not projector_file.is_file():
        raise OwledError(f"{projector_file}: missing; an untrained projector is not worth pruning")
    projector = MLPProjector(ProjectorConfig(**config["projector"]))
    projector.load_state_dict(load_file(str(projector_file)))
    return projector


def open_vlm_dir(src: Path) -> StreamedVLM:
    """Read an owled model directory (not int8) without reading its LM's (or HF tower's) weights."""
    from transformers import AutoTokenizer

    config = read_model_config(src)
    if config.get("precision", "fp32") != "fp32":
        raise OwledError(f"{src}: is an int8 deploy model; prune the fp32 model, then run owled deploy")
    lm_dir = default_lm_dir() if config["lm"] == WHEEL_LM else src / config["lm"]
    check_hf_dir(lm_dir, "causal LM")
    files, keys = _rooted(LM_ROOT, weight_files(lm_dir))
    enc_config = EncoderConfig.from_dict(config["encoder"])
    weights = config.get("encoder_weights", "encoder.safetensors")
    if enc_config.kind in ("clip", "siglip"):
        encoder = _skeleton_encoder(enc_config)
        enc_files, enc_keys = _rooted(ENCODER_ROOT, _encoder_files(src, weights))
        files, keys = {**files, **enc_files}, {**keys, **enc_keys}
    else:
        encoder = build_encoder(enc_config)
        if weights == WHEEL_ENCODER:
            encoder.load_imagenet_backbone(efficientnet_lite0_pth())
        else:
            encoder.load_state_dict(load_file(str(src / weights)))
    tokenizer = AutoTokenizer.from_pretrained(lm_dir, local_files_only=True, trust_remote_code=False)
    lora_file = src / "lora.safetensors"
    lora = (load_file(str(lora_file)), LoraConfig(**config.get("lora", {}))) if lora_file.is_file() else None
    vlm = DrivingVLM(encoder, _projector(src, config), _skeleton_lm(_hf_config(lm_dir)), tokenizer, dict(config.get("meta", {}))).eval()
    written = {k: v for k, v in config.items() if k not in ("lora", "encoder_weights", "lm", "meta")}
    return StreamedVLM(src, written, vlm, files, keys, lora, lm_dir)


def open_llava_dir(src: Path) -> StreamedVLM:
    """Read a native HF LLaVA directory without reading its vision tower's or LM's weights.

    The pruned model is an owled directory that loads as `load_vlm` loads the LLaVA one."""
    from transformers import AutoTokenizer

    from owled_ros.model.llava import llava_configs, llava_name

    hf = _hf_config(src)
    enc_config, proj_config = llava_configs(hf)
    stored = weight_files(src)
    named = {llava_name(key): key for key in stored}
    named.pop(None, None)
    files = {n: stored[key] for n, key in named.items()}
    projector = MLPProjector(proj_config)
    proj_names = [n for n in files if n.startswith("projector.")]
    projector.load_state_dict({n.removeprefix("projector."): t.float() for n, t in read_tensors(files, proj_names, named).items()})
    tokenizer = AutoTokenizer.from_pretrained(src, trust_remote_code=False, local_files_only=True)
    meta = {"source": f"llava:{src.name}", "trained": True}
    vlm = DrivingVLM(_skeleton_encoder(enc_config), projector, _skeleton_lm(hf.text_config), tokenizer, meta).eval()
    config = {"format": FORMAT, "version": 1, "encoder": enc_config.to_dict(), "projector": proj_config.to_dict()}
    return StreamedVLM(src, config, vlm, files, named, None, None)


def _is_llava(src: Path) -> bool:
    hf = src / "config.json"
    try:
        return hf.is_file() and json.loads(hf.read_text()).get("model_type") == "llava"
    except json.JSONDecodeError:
        return False  # the loader names the broken file


def streamable(src: Path) -> bool:
    """An owled directory or a native LLaVA one (its config.json says model_type llava): what `open_streamed` opens."""
    return (src / CONFIG_NAME).is_file() or _is_llava(src)


def open_streamed(src: Path) -> StreamedVLM:
    if (src / CONFIG_NAME).is_file():
        return open_vlm_dir(src)
    if _is_llava(src):
        return open_llava_dir(src)
    raise OwledError(f"{src}: not an owled model directory (no {CONFIG_NAME}) nor a LLaVA checkpoint")


def prune_vlm_dir(opened: StreamedVLM, calib: CalibrationSet, config: PruneConfig, out: Path, calibration: dict) -> dict:
    """Prune a VLM to `out`: an HF vision tower block by block, then the LM one decoder layer at a time,
    each from the files; an EfficientNet encoder in memory.

    The output is an owled model directory like `owled prune`'s in-memory path writes (LoRA
    merged into the LM, which is a sharded HF checkpoint in lm/; a streamed tower is shards in
    encoder/); returns the report.
    """
    start = time.perf_counter()
    vlm = opened.vlm
    lm_parts, enc_parts = lm_blocks(vlm), encoder_blocks(vlm) if opened.streams_encoder else []
    _check_files(opened.src, opened.files, lm_parts + enc_parts)
    with MemorySampler() as memory, staged_dir(out) as model_dir, torch.no_grad():
        (model_dir / "lm").mkdir(parents=True)
        lm_store = LayerFiles(opened.files, model_dir / "lm", len(lm_parts) + 1, LM_ROOT, opened.lora, opened.keys)
        lm_store.write_rest(vlm.lm, lm_parts)
        vlm.lm.get_output_embeddings().to("meta")  # written; calibration never runs the LM head
        encoder_store: BlockStore = RESIDENT
        if opened.streams_encoder:
            (model_dir / "encoder").mkdir()
            encoder_store = LayerFiles(opened.files, model_dir / "encoder", len(enc_parts) + 1, ENCODER_ROOT, keys=opened.keys)
            encoder_store.write_rest(vlm.encoder, enc_parts)
        parts = prune_vlm(vlm, calib, config, llm_store=lm_store, encoder_store=encoder_store)
        if opened.lm_dir is not None:
            lm_store.copy_side_files(opened.lm_dir)
        else:
            vlm.lm.config.save_pretrained(model_dir / "lm")
            vlm.tokenizer.save_pretrained(model_dir / "lm")
        if isinstance(encoder_store, LayerFiles):
            counts = {**encoder_store.counts, **lm_store.counts}
        else:
            counts = {**count_zeros(parts[0].blocks), **lm_store.counts}
            save_file({n: t.contiguous() for n, t in vlm.encoder.state_dict().items()}, str(model_dir / "encoder.safetensors"))
        save_file({n: t.contiguous() for n, t in vlm.projector.state_dict().items()}, str(model_dir / "projector.safetensors"))
        memory.sample()
        report = build_report(config, parts, calibration, time.perf_counter() - start, counts, memory.peaks)
        vlm.meta["pruned"] = {k: report[k] for k in PRUNED_META}
        written = {**opened.config, "encoder_weights": "encoder" if opened.streams_encoder else "encoder.safetensors",
                   "lm": "lm", "meta": vlm.meta}
        (model_dir / CONFIG_NAME).write_text(json.dumps(written, indent=2))
        if (opened.src / OOD_FILE).is_file():  # the source's OOD statistics travel with the pruned model
            shutil.copy2(opened.src / OOD_FILE, model_dir / OOD_FILE)
        write_report(report, model_dir)
    return report
