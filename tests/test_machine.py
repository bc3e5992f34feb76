"""Records say where they ran: the processor, its kernel-relevant instruction sets, and the kernels dispatched."""

from __future__ import annotations

import json

import pytest

import backends
from backends import kernel_notes
from common import machine

XEON = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
stepping\t: 8
flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 avx512f avx512dq avx512bw avx512vl avx512_vnni \
avx512_bf16 amx_bf16 avx512_fp16 amx_tile amx_int8

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: something else
"""


def test_describe_reads_the_first_processor_and_its_kernel_isa(tmp_path, monkeypatch):
    (tmp_path / "cpuinfo").write_text(XEON)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.delenv("MKL_CBWR", raising=False)
    got = machine.describe(tmp_path / "cpuinfo")
    assert got["cpu"] == "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz"
    assert got["vendor"] == "GenuineIntel" and got["family_model_stepping"] == "6/143/8"
    assert got["isa"] == ["sse4_2", "avx", "fma", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                          "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8"]  # fmt: skip
    assert got["env"]["ONEDNN_MAX_CPU_ISA"] == "AVX2" and "MKL_CBWR" not in got["env"]
    assert machine.summary(got) == "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz (6/143/8) AMX " \
        f"{got['cores']} cores ONEDNN_MAX_CPU_ISA=AVX2"
    json.dumps(got)  # stored in every run record


def test_describe_without_cpuinfo_still_names_something(tmp_path):
    got = machine.describe(tmp_path / "missing")
    assert got["cpu"] and got["isa"] == [] and got["cores"] >= 1


def test_onednn_verbose_lines_name_the_isa_and_implementations():
    lines = "\n".join([
        "onednn_verbose,v1,info,oneDNN v3.12.0 (commit 80afa71)",
        "onednn_verbose,v1,info,cpu,isa:Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions",
        "onednn_verbose,v1,primitive,exec,cpu,reorder,jit:blk,undef,src:f32,,16x6x5x5,0.01",
        "onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx512_core,forward_training,src,,mb4,0.04",
        "onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx512_core,forward_training,src,,mb4,0.03",
    ])  # fmt: skip
    assert machine.onednn_isa(lines) == "Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions"
    assert machine.onednn_implementations(lines) == ["convolution brg_conv_fwd:avx512_core"]
    assert machine.onednn_isa("") is None


def test_captured_output_reads_native_writes_to_stdout():
    import os

    assert machine.captured_output(lambda: os.write(1, b"from C\n")) == "from C\n"


@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_backends_say_what_they_dispatched_to(backend):
    from backends import load_backend

    kernels = load_backend(backend).kernels()
    json.dumps(kernels)
    if backend == "torch":
        assert kernels["cpu_capability"] in ("DEFAULT", "AVX2", "AVX512", "ZVECTOR", "NEON", "SVE256", "VSX")
        assert kernels["onednn_isa"], "oneDNN printed no ISA line while a convolution ran"
    else:
        assert "blas" in kernels and kernels["numpy_simd"]["baseline"]


@pytest.mark.parametrize(("kernels", "isa", "env", "expected"), [
    ({"onednn": False}, ["avx2", "avx512_vnni"], {}, False),  # what TensorFlow answered, recorded since 2026-12-06
    ({}, ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"], {}, True),  # older records: TensorFlow's Linux default
    ({}, ["avx2"], {}, False),  # an AVX2 processor: TensorFlow leaves oneDNN off unless told
    ({}, ["avx2"], {"TF_ENABLE_ONEDNN_OPTS": "1"}, True),
    ({}, ["avx2", "amx_tile"], {"TF_ENABLE_ONEDNN_OPTS": "0"}, False),
])  # fmt: skip
def test_the_report_tells_which_tensorflow_runs_ran_onednn(kernels, isa, env, expected):
    meta = {"kernels": kernels, "machine": {"cpu": "AMD EPYC", "isa": isa, "cores": 2, "env": env}}
    assert kernel_notes.onednn_ran(meta) is expected
    assert backends.kernel_note("tensorflow", meta) == f"oneDNN {'on' if expected else 'off'}"
    assert backends.kernel_note("torch", meta) is None  # the registry names no note for PyTorch
    assert kernel_notes.onednn_ran({"kernels": {"onednn_opts": "default (on for x86)"}, "host": "vm"}) is None
