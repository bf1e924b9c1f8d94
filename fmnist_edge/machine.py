"""What a figure was measured on: the CPU and the vector flags kernels are chosen by (stdlib only)."""

from __future__ import annotations

import platform

CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_model() -> dict:
    """The CPU's name and the vector flags ONNX Runtime and PyTorch choose kernels by: machines of
    one kind differ (AVX-512 with or without AMX), and a ratio means little without them."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    name = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:  # not Linux: the name platform gives, no flags
        pass
    return {"cpu": name, "cpu_flags": [f for f in CPU_FLAGS if f in flags]}


def environment_line(env: dict) -> str:
    """One Markdown line naming what a table was measured on."""
    flags = ", ".join(env.get("cpu_flags") or []) or "no flags read"
    load = env.get("load_average") or 0.0
    return (f"Measured on {env.get('cpus')} CPUs of {env.get('cpu')} ({flags}), onnxruntime "
            f"{env.get('onnxruntime')}; 1-minute load average {load:.2f} at the end (the benchmark's own "
            f"included), {env.get('time')}.")
