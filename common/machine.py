"""Where a run ran: the processor, the instruction-set extensions that change which kernels run, and the
environment variables that pin them. Recorded with every run (`meta.machine`, and a short form per attempt), so
a reader comparing step losses across machines can tell float drift from a different result.

Frameworks choose their kernels at run time from the processor's instruction sets (oneDNN and MKL in PyTorch
and MXNet, LLVM's host target in XLA, NumPy's own SIMD dispatch and OpenBLAS's core type), so two machines with
the same code and seed can sum in another order. Each backend adds what its framework says it dispatched to
(`kernels()` in the backend contract).
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The extensions that select different float kernels in oneDNN, MKL, OpenBLAS, XLA and NumPy (Linux flag names).
KERNEL_ISA = ("sse4_2", "avx", "fma", "avx2", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
              "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "neon", "asimd", "sve")  # fmt: skip

# Environment variables that pin or change the kernels a framework picks (recorded when set).
KERNEL_ENV = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ONEDNN_DEFAULT_FPMATH_MODE", "ATEN_CPU_CAPABILITY", "MKL_CBWR",
              "MKL_ENABLE_INSTRUCTIONS", "MKL_DEBUG_CPU_TYPE", "OPENBLAS_CORETYPE", "OPENBLAS_VERBOSE",
              "NPY_DISABLE_CPU_FEATURES", "XLA_FLAGS", "TF_ENABLE_ONEDNN_OPTS", "TF_DETERMINISTIC_OPS",
              "MXNET_MKLDNN_ENABLED", "MXNET_ENGINE_TYPE", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
              "CUBLAS_WORKSPACE_CONFIG")  # fmt: skip

CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo(path: Path = CPUINFO) -> dict[str, str]:
    """The first processor's fields from /proc/cpuinfo (Linux); empty elsewhere."""
    fields: dict[str, str] = {}
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return fields
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def describe(cpuinfo: Path = CPUINFO) -> dict[str, Any]:
    """The processor and what pins its kernels, as recorded with each run."""
    info = _cpuinfo(cpuinfo)
    flags = set((info.get("flags") or info.get("Features") or "").split())
    model = info.get("model name") or info.get("Model") or platform.processor() or "unknown"
    family = "/".join(info[k] for k in ("cpu family", "model", "stepping") if k in info)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return {
        "cpu": model,
        "vendor": info.get("vendor_id") or info.get("CPU implementer") or "unknown",
        "family_model_stepping": family or None,
        "arch": platform.machine(),
        "isa": [flag for flag in KERNEL_ISA if flag in flags],
        "cores": cores,
        "os": f"{platform.system()} {platform.release()}",
        "env": {name: os.environ[name] for name in KERNEL_ENV if name in os.environ},
    }


def widest_isa(machine: dict[str, Any]) -> str | None:
    """The widest vector instructions a machine's record names ('AMX', 'AVX-512', 'AVX2', ...), or None."""
    isa = machine.get("isa") or []
    widest = next((f for f in ("amx_tile", "avx512f", "avx2", "avx", "sve", "asimd") if f in isa), None)
    names = {"amx_tile": "AMX", "avx512f": "AVX-512", "avx2": "AVX2", "avx": "AVX", "sve": "SVE", "asimd": "NEON"}
    return names[widest] if widest else None


def named(meta: dict[str, Any]) -> str:
    """The machine a run record's meta names (`summary`), or, where it names no processor, its host."""
    return summary(meta["machine"]) if meta.get("machine") else f"not recorded (host {meta.get('host', '?')})"


def summary(machine: dict[str, Any]) -> str:
    """One line naming a machine: processor, family/model, widest vector ISA, cores."""
    widest = widest_isa(machine)
    parts = [str(machine.get("cpu", "unknown"))]
    if machine.get("family_model_stepping"):
        parts.append(f"({machine['family_model_stepping']})")
    if widest:
        parts.append(widest)
    parts.append(f"{machine.get('cores', '?')} cores")
    pins = machine.get("env") or {}
    pins = {k: v for k, v in pins.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if pins:
        parts.append(" ".join(f"{k}={v}" for k, v in sorted(pins.items())))
    return " ".join(parts)


def numpy_kernels() -> dict[str, Any]:
    """NumPy's own SIMD dispatch and the BLAS it links, with the core type OpenBLAS chose (threadpoolctl)."""
    try:
        from numpy._core import _multiarray_umath as umath  # numpy 2
    except ImportError:  # numpy 1 (MXNet's environment)
        from numpy.core import _multiarray_umath as umath  # type: ignore[no-redef]

    features = getattr(umath, "__cpu_features__", {})
    dispatch = [name for name in getattr(umath, "__cpu_dispatch__", []) if features.get(name)]
    out: dict[str, Any] = {"numpy_simd": {"baseline": list(getattr(umath, "__cpu_baseline__", [])),
                                          "dispatched": dispatch}}  # fmt: skip
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return out
    for pool in threadpool_info():
        if pool.get("user_api") == "blas" and "numpy.libs" in str(pool.get("filepath", "")):  # numpy wheel's own
            out["blas"] = f"{pool.get('internal_api')} {pool.get('version')} ({pool.get('architecture')})"
    return out


def captured_output(action: Callable[[], object]) -> str:
    """What native code wrote to this process's stdout while `action` ran (read from the file descriptor, as
    oneDNN's verbose mode prints there, not through Python's sys.stdout)."""
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        try:
            action()
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        sink.seek(0)
        return sink.read().decode(errors="replace")


def onednn_isa(verbose_output: str) -> str | None:
    """The instruction set oneDNN reports it dispatches to, from its verbose lines ('...,cpu,isa:Intel AVX2')."""
    for line in verbose_output.splitlines():
        at = line.find(",isa:")
        if at >= 0:
            return line[at + len(",isa:"):].strip()
    return None


def onednn_implementations(verbose_output: str) -> list[str]:
    """The oneDNN implementations that ran ('brg_conv_fwd:avx2', 'jit:avx2', ...), in first-seen order."""
    seen: list[str] = []
    for line in verbose_output.splitlines():
        parts = line.split(",")
        if len(parts) > 6 and parts[2:4] == ["primitive", "exec"] and parts[5] != "reorder":
            name = f"{parts[5]} {parts[6]}"
            if name not in seen:
                seen.append(name)
    return seen
