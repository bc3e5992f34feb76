"""What a run's record says of its kernels beyond its processor, per framework, named by the registry's
`kernel_note` field. Framework-free: these read records only (the report imports them)."""

from __future__ import annotations

from typing import Any

# TensorFlow's default for its oneDNN kernels on Linux (DefaultOneDnnPolicy in tensorflow/core/util/port.cc): on only
# where the processor has one of these; TF_ENABLE_ONEDNN_OPTS overrides it (the TensorFlow backend pins it on).
TF_ONEDNN_DEFAULT_ISA = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")


def onednn_ran(meta: dict[str, Any]) -> bool | None:
    """Whether a TensorFlow run ran oneDNN's kernels: as its record says (`kernels.onednn`, recorded since
    2026-12-06), else from the TF_ENABLE_ONEDNN_OPTS it recorded and TensorFlow's default for its processor; None
    where the record names no processor."""
    kernels = meta.get("kernels") or {}
    if "onednn" in kernels:
        return bool(kernels["onednn"])
    machine = meta.get("machine")
    if not machine:
        return None
    pin = (machine.get("env") or {}).get("TF_ENABLE_ONEDNN_OPTS")
    if pin is not None:
        return pin.strip().lower() in ("1", "true")
    return any(flag in (machine.get("isa") or []) for flag in TF_ONEDNN_DEFAULT_ISA)


def onednn(meta: dict[str, Any]) -> str | None:
    """'oneDNN on' / 'oneDNN off' for a TensorFlow run, None where the record cannot tell."""
    ran = onednn_ran(meta)
    return None if ran is None else f"oneDNN {'on' if ran else 'off'}"
