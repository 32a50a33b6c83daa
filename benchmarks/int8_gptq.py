"""Experiment: an int8 deploy model whose weights are GPTQ-rounded instead of rounded to nearest.

`owled deploy`'s smoothing and per-row scales, then each LM linear (not the tied lm_head) is
rounded column by column with the error spread over the later columns through the inverse
calibration Hessian (GPTQ; the SparseGPT solver's factorisation), pruned zeros kept zero.
The output directory loads like any deploy model. Not yet an `owled deploy` option: BENCHMARKS
5.0.4 has what it measured.

    source scripts/env.sh
    OMP_NUM_THREADS=1 python benchmarks/int8_gptq.py runs/s14/wanda10 runs/s14/w10-gptq-d03 --down-alpha 0.3
"""
import argparse
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from owled_ros.data.calibration import load_calibration
from owled_ros.deploy.build import smooth_for_int8
from owled_ros.deploy.config import DeployConfig
from owled_ros.model.int8 import INT8_WEIGHTS
from owled_ros.model.checkpoint import load_vlm, save_vlm
from owled_ros.prune.calibrate import observe
from owled_ros.prune.sparsegpt import _inverse_cholesky
from owled_ros.prune.vlm import run_sample

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("model", help="an fp32 (pruned) model directory")
p.add_argument("out", help="output model directory (must not exist)")
p.add_argument("--alpha", type=float, default=DeployConfig().alpha)
p.add_argument("--down-alpha", type=float, default=None)
args = p.parse_args()
out = Path(args.out)
if out.exists():
    p.error(f"{out}: already exists")
torch.set_num_threads(1)
config = DeployConfig(alpha=args.alpha, down_alpha=args.down_alpha)
vlm = load_vlm(args.model, "fp32")
calib = load_calibration(config.calib, config.calib_samples, vlm.tokenizer, seqlen=512)
info = smooth_for_int8(vlm, calib, config)
info["scheme"] += "; GPTQ rounding (experiment)"
layers = {n: m for n, m in vlm.lm.named_modules() if isinstance(m, nn.Linear) and n != "lm_head"}
with torch.no_grad(), observe(layers, hessian=True) as stats:
    for sample in tqdm(calib.visual, desc="hessians"):
        run_sample(vlm, sample)


@torch.no_grad()
def gptq(weight, hessian, block=128):
    w = weight.float().clone()
    zero = w == 0
    scale = (w.abs().amax(1) / 127.0).clamp(min=torch.finfo(torch.float32).eps)
    hinv = _inverse_cholesky(hessian.float(), w)
    q_all = torch.zeros_like(w, dtype=torch.int8)
    cols = w.shape[1]
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        h1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = w1[:, i]
            q = torch.round(col / scale).clamp(-127, 127)
            q = torch.where(zero[:, i1 + i], torch.zeros_like(q), q)
            e = (col - q * scale) / h1[i, i]
            w1[:, i:].addr_(e, h1[i, i:], alpha=-1)
            q_all[:, i1 + i] = q.to(torch.int8)
            err1[:, i] = e
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    return q_all, scale


save_vlm(vlm, out, int8=info)
file = out / "lm" / INT8_WEIGHTS
tensors = load_file(str(file))
rtn_err, gptq_err = 0.0, 0.0
for name, layer in tqdm(layers.items(), desc="gptq"):
    key = name + ".weight"
    h = stats[name].hessian
    q, scale = gptq(layer.weight, h)
    w = layer.weight.float()
    for qq, ss, acc in ((tensors[key + ".int8"], tensors[key + ".scale"], "rtn"), (q, scale, "gptq")):
        d = w - qq.float() * ss[:, None]
        err = float(torch.einsum("oi,ij,oj->", d.detach(), h / stats[name].rows, d.detach()))
        if acc == "rtn":
            rtn_err += err
        else:
            gptq_err += err
    tensors[key + ".int8"], tensors[key + ".scale"] = q.contiguous(), scale.float().contiguous()
print(f"calibration output error, summed over linears: round to nearest {rtn_err:.4g}  gptq {gptq_err:.4g}", flush=True)
save_file(tensors, str(file) + ".tmp")
Path(str(file) + ".tmp").replace(file)
