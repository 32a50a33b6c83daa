"""How much of what the expert needs do the frozen encoder's features carry? (BENCHMARKS §2.1)

Small probe heads trained on frozen EfficientNet-Lite0 features of generated train scenes,
scored on test scenes (another seed): the expert's action (the head also gets the ego
speed), the light state, and the distance of the lead vehicle in 10 m bins. Four feature
maps: the default model's (head, pooled to 3x6 tokens), the head unpooled (7x12), and two
earlier stages at 7x12. One probe architecture for all: a per-token linear map to 16
features, then an MLP over all tokens. If a probe this direct cannot name the action, the
VLM reading the same tokens cannot either.

    source scripts/env.sh
    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/encoder_probe.py --train 1200 --test 300
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch import nn

from owled_ros.data.expert import lead_vehicle
from owled_ros.data.scenes import SPLIT_SEEDS, Scene, generate_scene, render_scene
from owled_ros.model.assets import efficientnet_lite0_pth
from owled_ros.model.encoders import EfficientNetEncoder, EncoderConfig

STAGES = {"head": 17, "stage 15": 15, "stage 11": 11}  # EfficientNet-Lite0 block index
VARIANTS = {  # name -> (stage, pooled grid)
    "head 3x6 (the default model's tokens)": ("head", (3, 6)),
    "head 7x12": ("head", (7, 12)),
    "stage 15 (192 ch) 7x12": ("stage 15", (7, 12)),
    "stage 11 (112 ch, 14x24) pooled 7x12": ("stage 11", (7, 12)),
}
LEAD_BINS = 9  # 0-10, ..., 70+ m, and none


@torch.no_grad()
def stage_features(encoder: EfficientNetEncoder, scenes: list[Scene]) -> dict[str, torch.Tensor]:
    out: dict[str, list[torch.Tensor]] = {name: [] for name in STAGES}
    for i in range(0, len(scenes), 16):
        x = encoder.preprocess([render_scene(s) for s in scenes[i : i + 16]])
        for j, block in enumerate(encoder.backbone.blocks):
            x = block(x)
            for name, index in STAGES.items():
                if j == index:
                    out[name].append(x)
    return {name: torch.cat(v) for name, v in out.items()}


def labels(scenes: list[Scene]) -> dict[str, torch.Tensor]:
    lead = [lead_vehicle(s) for s in scenes]
    return {
        "action": torch.tensor([int(s.expert.action) for s in scenes]),
        "light": torch.tensor([int(s.light) for s in scenes]),
        "lead_distance_bin": torch.tensor([min(int(v.distance_m // 10), 7) if v else 8 for v in lead]),
        "speed": torch.tensor([[float(s.ego.speed_mps or 0.0) / 30.0] for s in scenes]),
    }


def probe(xtr: torch.Tensor, ytr: dict, xte: torch.Tensor, yte: dict, epochs: int = 60) -> dict[str, float]:
    mu, sd = xtr.mean((0, 2, 3), keepdim=True), xtr.std((0, 2, 3), keepdim=True) + 1e-5
    xtr, xte = [((x - mu) / sd).flatten(2).transpose(1, 2) for x in (xtr, xte)]
    n, c = xtr.shape[1], xtr.shape[2]
    torch.manual_seed(0)
    heads = {"action": 7, "light": 4, "lead_distance_bin": LEAD_BINS}
    net = nn.ModuleDict({"tok": nn.Linear(c, 16), "mlp": nn.Sequential(nn.Linear(n * 16 + 1, 256), nn.GELU(), nn.Dropout(0.2)),
                         **{k: nn.Linear(256, v) for k, v in heads.items()}})
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=0.05)

    def forward(x: torch.Tensor, speed: torch.Tensor) -> dict[str, torch.Tensor]:
        h = net["mlp"](torch.cat([F.gelu(net["tok"](x)).flatten(1), speed], 1))
        return {k: net[k](h) for k in heads}

    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(xtr))
        for i in range(0, len(perm), 64):
            b = perm[i : i + 64]
            logits = forward(xtr[b], ytr["speed"][b])
            loss = sum(F.cross_entropy(logits[k], ytr[k][b]) for k in heads)
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        logits = forward(xte, yte["speed"])
    return {k: round(float((logits[k].argmax(1) == yte[k]).float().mean()), 3) for k in heads}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=int, default=1200)
    p.add_argument("--test", type=int, default=300)
    args = p.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    encoder = EfficientNetEncoder(EncoderConfig())
    encoder.load_imagenet_backbone(efficientnet_lite0_pth())
    encoder.eval()
    train = [generate_scene(SPLIT_SEEDS["train"], i) for i in range(args.train)]
    test = [generate_scene(SPLIT_SEEDS["test"], i) for i in range(args.test)]
    ytr, yte = labels(train), labels(test)
    majority = {k: round(float((yte[k] == torch.mode(ytr[k]).values).float().mean()), 3) for k in ("action", "light", "lead_distance_bin")}
    rows = {"majority class": majority}
    ftr, fte = stage_features(encoder, train), stage_features(encoder, test)
    for name, (stage, grid) in VARIANTS.items():
        rows[name] = probe(F.adaptive_avg_pool2d(ftr[stage], grid), ytr, F.adaptive_avg_pool2d(fte[stage], grid), yte)
        print(name, rows[name], flush=True)
    print(json.dumps({"train": args.train, "test": args.test, "seconds": round(time.perf_counter() - start), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
