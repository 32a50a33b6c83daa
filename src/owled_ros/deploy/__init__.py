"""The on-vehicle deploy path: SmoothQuant-smoothed int8 LM weights, run by int8 matmuls.

Unstructured zeros buy no speed on this CPU (sparse CSR matvec is slower than dense),
so the speed comes from int8 matmuls (deploy.int8.Int8Linear); smoothing first keeps
SmolLM2's outlier activation channels from wrecking the int8 activations.
"""

PRECISIONS = ("auto", "fp32", "int8")
"""How a model directory runs: auto (what it holds), fp32 (an int8 one de-quantized), int8 (refuse fp32)."""
