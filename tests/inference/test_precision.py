"""The precision ``auto`` chooses: CPU flags first, then a measurement cached per CPU model and torch version."""

import json

import pytest
import torch

from bioseg.engine.trainer import resolve_precision
from bioseg.inference import precision
from bioseg.inference.precision import autocast_dtype, decide_cpu_precision

NATIVE = frozenset({"avx512f", "avx512_bf16"})
EMULATED = frozenset({"avx512f", "avx512_vnni", "avx512_vbmi2"})  # AVX-512 without bf16 arithmetic


def never_measure():
    raise AssertionError("the micro-benchmark ran where it should not")


def test_without_a_native_bf16_flag_auto_is_fp32_and_nothing_is_measured(tmp_path):
    choice = decide_cpu_precision(EMULATED, "Intel Xeon", tmp_path, never_measure)
    assert choice.precision == "fp32" and "no native bf16" in choice.reason
    assert not (tmp_path / "precision.json").exists()


@pytest.mark.parametrize("flag", ["avx512_bf16", "amx_bf16"])
def test_a_native_flag_is_confirmed_by_the_measurement_then_cached_and_reused(tmp_path, flag):
    choice = decide_cpu_precision(frozenset({flag}), "AMD EPYC", tmp_path, lambda: (20.0, 8.0))
    assert (choice.precision, choice.fp32_ms, choice.bf16_ms) == ("bf16", 20.0, 8.0)
    assert choice.reason == "bf16 is 2.5× faster than fp32 on AMD EPYC"
    cached = json.loads((tmp_path / "precision.json").read_text())
    assert cached == {f"AMD EPYC | torch {torch.__version__}": {"fp32_ms": 20.0, "bf16_ms": 8.0}}
    again = decide_cpu_precision(frozenset({flag}), "AMD EPYC", tmp_path, never_measure)
    assert again == choice


def test_a_native_flag_that_measures_slower_gives_fp32(tmp_path):
    choice = decide_cpu_precision(NATIVE, "Some CPU", tmp_path, lambda: (10.0, 19.0))
    assert choice.precision == "fp32" and choice.reason == "bf16 is 1.9× slower than fp32 on Some CPU"


def test_the_cache_is_per_cpu_model_and_survives_damage(tmp_path):
    decide_cpu_precision(NATIVE, "CPU A", tmp_path, lambda: (10.0, 5.0))
    assert decide_cpu_precision(NATIVE, "CPU B", tmp_path, lambda: (10.0, 20.0)).precision == "fp32"
    assert set(json.loads((tmp_path / "precision.json").read_text())) == {
        f"CPU A | torch {torch.__version__}", f"CPU B | torch {torch.__version__}"
    }
    (tmp_path / "precision.json").write_text("{not json")
    assert decide_cpu_precision(NATIVE, "CPU A", tmp_path, lambda: (10.0, 30.0)).precision == "fp32"  # measured anew


@pytest.mark.parametrize("cap", ["AVX512_CORE_VNNI", "AVX2"])
def test_onednn_capped_below_bf16_gives_fp32_without_measuring(tmp_path, cap):
    choice = decide_cpu_precision(NATIVE, "AMD EPYC", tmp_path, never_measure, cap)
    assert choice.precision == "fp32" and f"ONEDNN_MAX_CPU_ISA={cap}" in choice.reason


def test_a_cap_that_keeps_bf16_is_measured_and_cached_apart(tmp_path):
    decide_cpu_precision(NATIVE, "CPU", tmp_path, lambda: (10.0, 5.0))
    capped = decide_cpu_precision(NATIVE, "CPU", tmp_path, lambda: (10.0, 30.0), "AVX512_CORE_BF16")
    assert capped.precision == "fp32"  # measured under its own key, not read from the uncapped entry
    keys = json.loads((tmp_path / "precision.json").read_text())
    assert f"CPU | torch {torch.__version__} | AVX512_CORE_BF16" in keys


def test_the_cap_is_read_from_the_environment(monkeypatch):
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", " avx512_core_vnni ")
    assert precision.onednn_isa_cap() == "AVX512_CORE_VNNI"
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert precision.onednn_isa_cap() is None
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX2")
    assert precision.onednn_isa_cap() == "AVX2"


def test_no_cache_folder_measures_every_time(tmp_path):
    calls = []
    for _ in range(2):
        decide_cpu_precision(NATIVE, "CPU", None, lambda: calls.append(1) or (10.0, 5.0))
    assert len(calls) == 2


@pytest.mark.parametrize("native", [True, False])
def test_an_explicit_precision_always_wins_over_auto(monkeypatch, native):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    assert autocast_dtype("cpu", "bf16") == torch.bfloat16
    assert autocast_dtype("cpu", "fp32") is None
    assert autocast_dtype("cpu", "auto") == (torch.bfloat16 if native else None)
    assert resolve_precision("32", "cpu") == "32" and resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    assert resolve_precision("auto", "cpu") == ("bf16-mixed" if native else "32")


def test_cpu_flags_and_model_are_read_from_the_machine():
    flags = precision.cpu_flags()
    assert isinstance(flags, frozenset) and isinstance(precision.cpu_model(), str) and precision.cpu_model()
    if flags:  # Linux
        assert "fpu" in flags or "fp" in flags
