"""What the hardware computes natively, asked once by every flow that picks a precision: bf16 pays only where the
chip has it (AVX512-BF16 / AMX CPUs, Ampere and later GPUs); elsewhere it is emulated, and on an AVX2-only CPU
training cnn_deep in bf16 was measured 13x slower than fp32 (docs/BENCHMARKS.md)."""

from __future__ import annotations


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX512-BF16 / AMX): there bf16 convolutions run about twice
    as fast as fp32 (measured on cnn_deep, see bench/predict_speed.py); elsewhere bf16 is emulated and slower."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def native_bf16(device_type: str) -> bool:
    """bf16 is native on this device type ("cpu", "cuda")."""
    import torch

    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device_type == "cpu" and cpu_has_native_bf16()


def training_precision(accelerator: str = "auto") -> str:
    """Lightning's precision for `trainer.precision: auto`: bf16-mixed where the device that trains has bf16
    natively, else 32-true."""
    import torch

    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return "bf16-mixed" if native_bf16("cuda" if gpu else "cpu") else "32-true"
