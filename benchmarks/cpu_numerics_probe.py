"""Which CPU kernel settings change the bits of the float32 operations a GPTQ solve and an hf forward
use, on this machine (docs/reproducibility.md, "Across machines").

usage: .venv/bin/python benchmarks/cpu_numerics_probe.py
Each setting runs in a fresh process (torch and MKL read these variables when they start); the first
line is the process as found (SAFETYGRID_CPU_NUMERICS does not matter here: nothing is pinned), each
further line lists the operations whose output bytes differ from it, and the time of one
2048x896 @ 896x4864 float32 product.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

SETTINGS = [
    {},
    {"MKL_CBWR": "AUTO"},
    {"MKL_CBWR": "AVX2"},
    {"MKL_CBWR": "AVX512"},
    {"MKL_CBWR": "SSE4_2"},
    {"MKL_CBWR": "COMPATIBLE"},
    {"MKL_CBWR": "AVX2,STRICT"},
    {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    {"ATEN_CPU_CAPABILITY": "avx2"},
    {"ATEN_CPU_CAPABILITY": "default"},
    {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    {"OMP_NUM_THREADS": "1"},
    {"MKL_CBWR": "AVX2,STRICT", "OMP_NUM_THREADS": "1"},
    {"MKL_CBWR": "COMPATIBLE", "OMP_NUM_THREADS": "1"},
    # the pinned setting (safetygrid/cpu_numerics.py)
    {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "OMP_NUM_THREADS": "2"},
]

PROBE = r'''
import hashlib, json, time
import numpy as np
import torch
import torch.nn.functional as F

rng = np.random.default_rng(0)  # inputs from numpy: torch.randn itself is a vectorised kernel
def r(*shape): return torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
def h(t): return hashlib.sha256(t.detach().contiguous().numpy().tobytes()).hexdigest()[:8]
out = {}
out["mm"] = h(r(256, 576) @ r(576, 1536))
out["linear_lm_head"] = h(F.linear(r(7, 576), r(49152, 576)))
out["linear_one_row"] = h(F.linear(r(1, 896), r(4864, 896)))
out["bmm"] = h(torch.bmm(r(4, 576, 128), r(4, 128, 448)))
inputs = r(576, 2048)
out["hessian"] = h(inputs @ inputs.t())
H = inputs @ inputs.t() / 2048 + 0.01 * torch.eye(576)
L = torch.linalg.cholesky(H); out["cholesky"] = h(L)
Hinv = torch.cholesky_inverse(L); out["cholesky_inverse"] = h(Hinv)
out["cholesky_upper"] = h(torch.linalg.cholesky(Hinv, upper=True))
x = r(8, 9, 300)
out["softmax"] = h(torch.softmax(x, -1))
out["rms_norm"] = h(x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))
out["silu"] = h(F.silu(x))
out["exp"] = h(torch.exp(x))
out["sum"] = h(x.sum(-1))
q, k, v = r(1, 9, 40, 64), r(1, 9, 40, 64), r(1, 9, 40, 64)
out["attention"] = h(F.scaled_dot_product_attention(q, k, v, is_causal=True))
a, b = r(2048, 896), r(896, 4864)
start = time.perf_counter()
for _ in range(5):
    a @ b
out["ms_2048x896x4864"] = round((time.perf_counter() - start) / 5 * 1000, 1)
out["capability"] = torch.backends.cpu.get_cpu_capability()
out["threads"] = torch.get_num_threads()
print(json.dumps(out))
'''

KNOBS = ("MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS",
         "MKL_NUM_THREADS")


def run(setting: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in KNOBS}
    env.setdefault("OMP_NUM_THREADS", "2")
    env.update(setting)
    result = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    base = run(SETTINGS[0])
    print("as found (2 threads):", base)
    for setting in SETTINGS[1:]:
        found = run(setting)
        differs = sorted(k for k in found if k not in ("ms_2048x896x4864", "capability", "threads") and found[k] != base[k])
        print(f"{setting}: differs in {differs or 'nothing'}; {found['ms_2048x896x4864']} ms")


if __name__ == "__main__":
    main()
