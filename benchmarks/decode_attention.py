"""One decoding step's attention over a static KV cache, by kernel, on the shapes of the mixed-length
workload (issue 28): the grouped query heads of one position against (rows, kv heads, columns, dim)
keys and values under a padding mask. Each variant runs for 32 layers (8 rotating buffers, so the
cache is read from memory, not L2) inside one CUDA graph; times are per layer, and the effective
bandwidth counts the keys and values of the attended columns once.

usage: python benchmarks/decode_attention.py [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from statistics import median

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

KV_HEADS, GROUPS, DIM = 8, 4, 128  # Llama-3-8B
# (label, rows, cache columns, attended columns, real keys per row at the middle step); the short
# segment attends over the last 176 of the batch's 683 columns, as the static decoder slices it
SHAPES = [("long segment", 52, 683, 683, 614), ("short segment", 204, 683, 176, 106),
          ("uniform batch 128", 128, 152, 152, 105), ("long + short unsplit", 256, 683, 683, 190)]


def variants():  # type: ignore[no-untyped-def]
    def sdpa(q, k, v, m):  # type: ignore[no-untyped-def]
        return F.scaled_dot_product_attention(q, k, v, attn_mask=m, scale=DIM ** -0.5)

    def forced(backend):  # type: ignore[no-untyped-def]
        def run(q, k, v, m):  # type: ignore[no-untyped-def]
            with sdpa_kernel([backend]):
                return sdpa(q, k, v, m)
        return run

    def matmul_bf16_scores(q, k, v, m):  # type: ignore[no-untyped-def]
        scores = torch.matmul(q, k.transpose(-1, -2)).float() * DIM ** -0.5
        probs = scores.masked_fill(~m, float("-inf")).softmax(-1).to(v.dtype)
        return torch.matmul(probs, v)

    def matmul_fp32_scores(q, k, v, m):  # type: ignore[no-untyped-def]
        rows = q.shape[0]
        scores = torch.bmm(q.reshape(rows * KV_HEADS, GROUPS, DIM), k.reshape(rows * KV_HEADS, -1, DIM).transpose(1, 2),
                           out_dtype=torch.float32).reshape(rows, KV_HEADS, GROUPS, -1) * DIM ** -0.5
        probs = scores.masked_fill(~m, float("-inf")).softmax(-1).to(v.dtype)
        return torch.matmul(probs, v)

    return {"sdpa default": sdpa, "sdpa cudnn": forced(SDPBackend.CUDNN_ATTENTION),
            "sdpa efficient": forced(SDPBackend.EFFICIENT_ATTENTION), "sdpa math": forced(SDPBackend.MATH),
            "matmul, bf16 scores": matmul_bf16_scores, "matmul, fp32 scores": matmul_fp32_scores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    lines = []
    generator = torch.Generator(device="cuda").manual_seed(0)
    for label, rows, allocated, columns, real in SHAPES:
        buffers = []
        for _ in range(8):
            q = torch.randn(rows, KV_HEADS, GROUPS, DIM, device="cuda", dtype=torch.bfloat16, generator=generator)
            k, v = (torch.randn(rows, KV_HEADS, allocated, DIM, device="cuda", dtype=torch.bfloat16,
                                generator=generator)[:, :, allocated - columns:] for _ in range(2))
            m = torch.zeros(rows, 1, 1, columns, dtype=torch.bool, device="cuda")
            m[..., columns - real:] = True  # left padding and unwritten slots masked
            buffers.append((q, k, v, m))
        reference = [F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=m, scale=DIM ** -0.5)
                     for q, k, v, m in buffers[:1]][0]
        record = {"figure": "decode attention by kernel", "shape": label, "rows": rows, "columns": columns,
                  "real_keys": real}
        for name, fn in variants().items():
            try:
                out = fn(*buffers[0])
                error = float((out.float() - reference).norm() / reference.norm())
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for layer in range(32):
                        fn(*buffers[layer % 8])
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    for layer in range(32):
                        fn(*buffers[layer % 8])
                times = []
                for _ in range(12):
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    graph.replay()
                    end.record()
                    torch.cuda.synchronize()
                    times.append(start.elapsed_time(end) / 32)
                per_layer_ms = median(times[2:])
                kv_bytes = 2 * rows * KV_HEADS * columns * DIM * 2
                record[name] = {"ms_per_layer": round(per_layer_ms, 4), "tb_s": round(kv_bytes / per_layer_ms / 1e9, 2),
                                "rel_error_vs_fp32": round(error, 5)}
                del graph
            except Exception as exc:  # one unsupported kernel must not lose the others
                record[name] = f"failed: {type(exc).__name__}: {str(exc)[:120]}"
        record.update(device=torch.cuda.get_device_name(), torch=torch.__version__, date=time.strftime("%Y-%m-%d"))
        print(json.dumps(record), flush=True)
        lines.append(record)
    if args.out:
        with open(args.out, "w") as f:
            f.writelines(json.dumps(line) + "\n" for line in lines)


if __name__ == "__main__":
    main()
