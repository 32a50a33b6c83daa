"""What a prune run is asked to do, as plain data (no torch import: the CLI parser reads it)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

METHODS = ("magnitude", "wanda", "sparsegpt")
RATIOS = ("uniform", "owl", "sensitivity")  # sensitivity: structured channels only (prune/structured_sensitivity.py)
STRUCTURES = ("unstructured", "channels", "layers")  # prune/structured.py for the last two
IMPORTANCES = ("activation", "taylor", "taylor-conflict")  # prune/structured_importance.py
CALIB_DTYPES = ("fp32", "bf16")  # what the calibration forwards compute in (prune/calibrate.py)
# What block k is calibrated on: the outputs of blocks 0..k-1 as pruned (Wanda's and SparseGPT's
# reference code, llm-compressor's default) or as dense (llm-compressor's propagate_error=False).
CALIB_INPUTS = ("pruned", "dense")

# Swept on SmolLM2-135M, OWL-Wanda at 70 %, Wikipedia perplexity (BENCHMARKS.md, benchmarks/prune_owl_sweep.json):
# M=7, lambda=0.2 gave 340 against 472 at the OWL paper's LLaMA values (M=5, lambda=0.08) and 526 for uniform Wanda.
DEFAULT_OWL_M = 7.0
DEFAULT_OWL_LAMBDA = 0.2
# Per weight removed the encoder is the more sensitive part (docs/design.md; benchmarks/BENCHMARKS.md
# 2.7: 1.6 M encoder weights cost as much driving accuracy as 32 M LM weights), and it holds 3 %
# of the prunable weights, so pruning it hard saves little: by default it gets a quarter of S.
DEFAULT_ENCODER_SHARE = 0.25


def resolve_calib_dtype(choice: str) -> str:
    """'auto': bf16 where the CPU has bf16 dot products (cpu.py), else fp32 (emulated bf16 is slower)."""
    if choice != "auto":
        return choice
    from owled_ros.cpu import has_native_bf16

    return "bf16" if has_native_bf16() else "fp32"


@dataclass(frozen=True)
class PruneConfig:
    method: str
    ratios: str
    encoder_sparsity: float
    llm_sparsity: float
    nm: tuple[int, int] | None = None
    owl_m: float = DEFAULT_OWL_M
    owl_lambda: float = DEFAULT_OWL_LAMBDA
    calib_dtype: str = "fp32"
    structure: str = "unstructured"
    importance: str = "activation"  # structured only; unstructured uses `method`
    calib_inputs: str = "pruned"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.ratios not in RATIOS:
            raise ValueError(f"ratios must be one of {RATIOS}, got {self.ratios!r}")
        if self.structure not in STRUCTURES:
            raise ValueError(f"structure must be one of {STRUCTURES}, got {self.structure!r}")
        if self.importance not in IMPORTANCES:
            raise ValueError(f"importance must be one of {IMPORTANCES}, got {self.importance!r}")
        if self.structure != "channels" and self.importance != "activation":
            raise ValueError(f"--importance scores channels (--structure channels); {self.structure} pruning does not use it")
        if self.ratios == "sensitivity" and self.structure != "channels":
            raise ValueError("--ratios sensitivity budgets channel cuts (--structure channels) by how much each block's cut moves the action")
        if self.structure != "unstructured" and self.nm is not None:
            raise ValueError(f"--structure {self.structure} removes whole channels or layers; N:M sparsity is unstructured only")
        for name in ("encoder_sparsity", "llm_sparsity"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {getattr(self, name)}")
        if self.nm is not None:
            n, m = self.nm
            if not 0 < n < m:
                raise ValueError(f"N:M needs 0 < N < M, got {n}:{m}")
            for name in ("encoder_sparsity", "llm_sparsity"):
                if getattr(self, name) not in (0.0, n / m):
                    raise ValueError(f"with N:M {n}:{m} a part is either dense or {n}/{m} sparse; {name} is {getattr(self, name)}")
            if self.ratios == "owl":
                raise ValueError("N:M fixes every block's sparsity at N/M, so OWL ratios cannot apply")
        if self.calib_inputs not in CALIB_INPUTS:
            raise ValueError(f"calib_inputs must be one of {CALIB_INPUTS}, got {self.calib_inputs!r}")
        if self.calib_inputs == "dense" and (self.structure != "unstructured" or self.method == "magnitude"):
            raise ValueError("--calib-inputs dense applies to unstructured Wanda and SparseGPT (structured scores and "
                             "magnitude pruning never see pruned inputs)")
        if self.calib_dtype not in CALIB_DTYPES:
            raise ValueError(f"calib_dtype must be one of {CALIB_DTYPES}, got {self.calib_dtype!r}")
        if self.owl_m <= 0 or self.owl_lambda < 0:
            raise ValueError(f"OWL needs M > 0 and lambda >= 0, got M={self.owl_m}, lambda={self.owl_lambda}")

    def to_dict(self) -> dict:
        return asdict(self)
