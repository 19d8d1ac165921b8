"""Peak dense FLOP/s of the accelerators this project targets, for model FLOPs utilisation.

Figures per chip from the vendors' datasheets, dense (NVIDIA's datasheets give
Tensor Core figures with 2:4 sparsity, twice the dense rate; the dense half is
listed here). 'float32' is the non-Tensor-Core FP32 rate on GPUs (XLA may run
fp32 convolutions as TF32 on Tensor Cores, so fp32 MFU can exceed 1); Google
gives no fp32 figure for TPUs, so there is none here.
"""

from __future__ import annotations

from typing import Optional

# (substring of jax's device_kind, lower case) -> {model.dtype: peak FLOP/s}.
# Checked in order: the first match wins.
PEAK_FLOPS = (
    # NVIDIA H200 datasheet (SXM): BF16 Tensor Core 1,979 TFLOPS with sparsity, FP32 67 TFLOPS.
    ('h200', {'bfloat16': 989e12, 'float32': 67e12}),
    # NVIDIA H100 datasheet, SXM: BF16 Tensor Core 1,979 TFLOPS with sparsity, FP32 67 TFLOPS.
    ('h100', {'bfloat16': 989e12, 'float32': 67e12}),
    # NVIDIA A100 datasheet, SXM: BF16 Tensor Core 312 TFLOPS (624 with sparsity), FP32 19.5.
    ('a100', {'bfloat16': 312e12, 'float32': 19.5e12}),
    # NVIDIA L4 datasheet: BF16 Tensor Core 242 TFLOPS with sparsity, FP32 30.3 TFLOPS.
    ('l4', {'bfloat16': 121e12, 'float32': 30.3e12}),
    # Cloud TPU docs, "TPU v5p": peak compute per chip (bf16) 459 TFLOPs.
    ('v5p', {'bfloat16': 459e12}),
    # Cloud TPU docs, "TPU v5e": peak compute per chip (bf16) 197 TFLOPs (device_kind 'TPU v5 lite').
    ('v5 lite', {'bfloat16': 197e12}),
    ('v5e', {'bfloat16': 197e12}),
    # Cloud TPU docs, "TPU v4": peak compute per chip 275 teraflops (bf16 or int8).
    ('v4', {'bfloat16': 275e12}),
)


def peak_flops(device_kind: str, dtype: str) -> Optional[float]:
  """Peak dense FLOP/s of one ``device_kind`` chip at ``dtype``; None when not in the table."""
  kind = device_kind.lower()
  if 'tpu' not in kind and 'nvidia' not in kind and not kind.startswith(('h100', 'h200', 'a100')):
    return None
  for key, peaks in PEAK_FLOPS:
    if key in kind:
      return peaks.get(dtype)
  return None


def utilisation(flops_per_second: float, device_kind: str, dtype: str,
                num_devices: int = 1) -> Optional[float]:
  """Model FLOPs utilisation: achieved / peak of ``num_devices`` chips; None without a peak."""
  peak = peak_flops(device_kind, dtype)
  return None if peak is None else flops_per_second / (peak * num_devices)
