"""Pinned CPU numerics: the same float32 bits from a quantize or generate job on any x86-64 CPU.

A float32 CPU job's bits depend on which kernels ran, and the libraries under torch choose their
kernels by the CPU they find: MKL (torch's BLAS and LAPACK: every matrix product, the GPTQ solve's
Cholesky factorisations) runs other code on Intel than on AMD and other code again with AVX-512;
torch's own vectorised kernels (softmax, exp, SiLU, norms) are compiled once per instruction set
and picked at start; oneDNN may use AMX tiles; and the number of threads splits reductions. So a
GPTQ checkpoint made on an Intel Xeon differed from the one the labels were made on (AMD EPYC), and
with it every GPTQ response (issue 35; docs/reproducibility.md has the measurements).

``pin_cpu_numerics`` fixes each of these choices through the settings the libraries read at start
(``PINNED_CPU_ENV``), so it must run before torch is imported; the quantize and generate scripts
call it first. It is the default; ``SAFETYGRID_CPU_NUMERICS=native`` leaves the process as found
(faster, machine-dependent bits). Jobs on a GPU are left alone: the pinning only concerns CPU
kernels, and a CUDA job's bits are the GPU's business.

This module imports nothing heavy (no torch), so the scripts can import it before anything else.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Mapping, MutableMapping

log = logging.getLogger(__name__)

MODE_VARIABLE = "SAFETYGRID_CPU_NUMERICS"
PINNED, NATIVE = "pinned", "native"

# The thread count every pinned job uses: the workflow's model jobs declare threads: 2, and a
# reduction split over another number of threads adds in another order (MKL's Cholesky measurably so)
PINNED_THREADS = 2

PINNED_CPU_ENV: dict[str, str] = {
    # MKL's conditional numerical reproducibility on its SSE2 branch, the one branch MKL documents
    # as giving the same results on Intel and non-Intel CPUs: on a non-Intel CPU (AMD) MKL ignores
    # the AVX2 and AVX512 branches and runs its AUTO branch, which differs from Intel's (measured:
    # MKL_CBWR=AVX2, AVX512, SSE4_2 and AUTO give the same bits on AMD, COMPATIBLE other bits)
    "MKL_CBWR": "COMPATIBLE",
    # torch's own vectorised kernels (softmax, exp, SiLU, reductions): the AVX2 build, which every
    # x86-64 CPU of the last decade runs, instead of whatever the CPU supports best
    "ATEN_CPU_CAPABILITY": "avx2",
    # oneDNN (torch's mkldnn operators): never AVX-512 or AMX tiles
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    # a fixed number of threads, never adjusted at run time (MKL's and OpenMP's reproducibility conditions)
    "OMP_NUM_THREADS": str(PINNED_THREADS),
    "MKL_NUM_THREADS": str(PINNED_THREADS),
    "MKL_DYNAMIC": "FALSE",
    "OMP_DYNAMIC": "FALSE",
}


def mode(environ: Mapping[str, str] = os.environ) -> str:
    value = environ.get(MODE_VARIABLE, PINNED).strip().lower() or PINNED
    if value not in (PINNED, NATIVE):
        raise ValueError(f"{MODE_VARIABLE}={value!r}: use {PINNED!r} (the default) or {NATIVE!r}")
    return value


def gpu_visible(environ: Mapping[str, str] = os.environ, dev: Path = Path("/dev")) -> bool:
    """Whether an NVIDIA GPU is there for torch, judged without importing torch (which must not be
    imported before the pinning): a device file and no CUDA_VISIBLE_DEVICES that hides them all."""
    if environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return any(dev.glob("nvidia[0-9]*"))


def runs_on_cpu(device: str, environ: Mapping[str, str] = os.environ, dev: Path = Path("/dev")) -> bool:
    """Whether a job asking for ``device`` ("cpu", "cuda[:n]", "auto") computes on the CPU."""
    if device == "auto":
        return not gpu_visible(environ, dev)
    return not device.startswith("cuda")


def pin_cpu_numerics(device: str = "auto", environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set ``PINNED_CPU_ENV`` in ``environ`` (the process's) for a job that computes on the CPU;
    return what was set ({} where nothing was: a GPU job, or SAFETYGRID_CPU_NUMERICS=native).
    A value found there already is replaced (and logged): pinned means the same on every machine,
    whatever its shell exports."""
    environ = os.environ if environ is None else environ
    if mode(environ) == NATIVE or not runs_on_cpu(device, environ):
        return {}
    if environ is os.environ and "torch" in sys.modules:
        # torch has read (some of) these already: pinning now would pin half and say it pinned all
        raise RuntimeError("pin_cpu_numerics must run before torch is imported")
    for name, value in PINNED_CPU_ENV.items():
        if environ.get(name, value) != value:
            log.warning("pinned CPU numerics: %s=%s replaces %s", name, value, environ[name])
        environ[name] = value
    return dict(PINNED_CPU_ENV)


def pinned_in_effect(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process runs with the pinned settings (torch's own two read back from torch)."""
    import torch

    return (all(environ.get(name) == value for name, value in PINNED_CPU_ENV.items())
            and torch.backends.cpu.get_cpu_capability() == PINNED_CPU_ENV["ATEN_CPU_CAPABILITY"].upper()
            and torch.get_num_threads() == PINNED_THREADS)


def describe(environ: Mapping[str, str] = os.environ) -> str:
    """How this process's CPU kernels were chosen, for the rows' ``kernel`` column and status.json."""
    if pinned_in_effect(environ):
        return f"pinned (MKL_CBWR={PINNED_CPU_ENV['MKL_CBWR']}, {PINNED_THREADS} threads)"
    return "native"


def warn_if_unpinned(job: str, environ: Mapping[str, str] = os.environ) -> None:
    """Log that ``job`` computes on the CPU without the pinning although it was not opted out of
    (torch was imported before ``pin_cpu_numerics``, e.g. in-process from Python): its bits are this
    machine's."""
    if mode(environ) == PINNED and not pinned_in_effect(environ):
        log.warning("%s runs on the CPU with this machine's own kernels (its bits may differ on another "
                    "CPU): call safetygrid.cpu_numerics.pin_cpu_numerics() before torch is imported, as "
                    "workflow/scripts do, or set %s=%s to say so", job, MODE_VARIABLE, NATIVE)
