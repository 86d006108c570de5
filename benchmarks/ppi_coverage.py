"""Coverage of the prediction-powered intervals (analysis/ppi.py) in the regimes the runs meet:
every response labelled, or 30 labelled at random; baseline prevalence 1 %, 10 % and 40 %; k = 1 and
k = 3 samples per prompt in the compared cell (samples of a prompt share a per-prompt rate, drawn
logit-normal, shared by the two cells of a contrast); 35 prompts per cell as in the demo; a judge
with the unsafe axis's error (TPR 0.25, FPR 0.01, as the demo's ensemble on gptq) and one with the
refusal axis's (TPR 0.8, FPR 0.1). Prints, per regime, the coverage of theta_pp in the compared cell
(ASR_pp or RR_pp by the judge), in the greedy baseline, and of the paired Delta_pp, with mean widths;
then the time cell_ppi takes at the paper's scale.

    .venv/bin/python benchmarks/ppi_coverage.py [--studies 1000] [--resamples 2000] [--no-scale]
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import pandas as pd

from safetygrid.analysis.simulate import PPIRegime, ppi_coverage

JUDGES = {"ASR_pp (judge TPR 0.25, FPR 0.01)": (0.25, 0.01), "RR_pp (judge TPR 0.8, FPR 0.1)": (0.8, 0.1)}


def scale_timing(resamples: int, seed: int = 0) -> float:
    """Seconds cell_ppi and contrast_ppi take at the paper's scale: 9 models x 3 precisions x 6
    temperatures, 200 prompts x 5 samples, 60 random labels per cell on every axis."""
    from safetygrid.analysis.ppi import cell_ppi, contrast_ppi

    rng = np.random.default_rng(seed)
    prompts = [f"p{i}" for i in range(200)]
    frames, golds = [], []
    for model, precision, temperature in itertools.product(range(9), ("bf16", "int8", "int4"),
                                                           ("0.0", "0.3", "0.6", "0.9", "1.2", "1.5")):
        n = 200 * 5
        cell = pd.DataFrame({"model": f"m{model}", "precision": precision, "kv": "fp", "temperature": temperature,
                             "prompt_id": np.repeat(prompts, 5), "sample": np.tile(np.arange(5), 200),
                             "unsafe": rng.random(n) < 0.1, "refusal": rng.random(n) < 0.7})
        frames.append(cell)
        picked = cell.iloc[rng.choice(n, 60, replace=False)]
        golds.append(picked[["model", "precision", "kv", "temperature", "prompt_id", "sample"]].assign(
            draw="random", unsafe=rng.integers(0, 2, 60), refusal=rng.integers(0, 2, 60),
            complied=rng.integers(0, 2, 60)))
    votes, gold = pd.concat(frames, ignore_index=True), pd.concat(golds, ignore_index=True)
    gold["temperature"] = gold["temperature"].astype(float)
    start = time.perf_counter()
    pp = cell_ppi(votes, gold, prompts, seed=seed, resamples=resamples)
    table = pd.DataFrame([{"model": m, "precision": q, "kv": "fp", "temperature": float(t)}
                          for m, q, t in pp.cells[["model", "precision", "temperature"]].itertuples(index=False)])
    contrast_ppi(table, pp, {"precision": "bf16", "kv": "fp"})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=1000)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--level", type=float, default=0.95)
    parser.add_argument("--no-scale", action="store_true", help="skip the timing at the paper's scale")
    args = parser.parse_args()
    for name, (tpr, fpr) in JUDGES.items():
        print(f"\n{name}")
        print(f"{'prevalence':>10} {'k':>2} {'labelled':>9} {'cell':>6} {'baseline':>8} {'delta':>6} "
              f"{'width':>6} {'d.width':>7} {'NA':>3} {'s':>5}")
        for prevalence, k, labelled in itertools.product((0.01, 0.1, 0.4), (1, 3), (None, 30)):
            start = time.perf_counter()
            regime = PPIRegime(prevalence, k, labelled, tpr, fpr)
            result = ppi_coverage(regime, studies=args.studies, resamples=args.resamples, level=args.level,
                                  seed=int(1000 * prevalence) + 10 * k + (labelled or 0))
            shown = "all" if labelled is None else f"{labelled}/{35 * k}"
            print(f"{prevalence:>10.2f} {k:>2} {shown:>9} {result.cell:>6.3f} {result.baseline:>8.3f} "
                  f"{result.delta:>6.3f} {result.cell_width:>6.3f} {result.delta_width:>7.3f} {result.na:>3} "
                  f"{time.perf_counter() - start:>5.1f}", flush=True)
    print(f"\n({args.studies} studies per regime, {args.resamples} resamples; binomial sd of a "
          f"{100 * args.level:g} % coverage estimate: {100 * (args.level * (1 - args.level) / args.studies) ** 0.5:.1f} "
          f"points; the baseline is greedy, k = 1, and labelled like the cell)")
    if not args.no_scale:
        seconds = scale_timing(args.resamples)
        print(f"cell_ppi + contrast_ppi at the paper's scale (162 cells x 1000 responses, 3 axes, "
              f"{args.resamples} resamples): {seconds:.1f} s")


if __name__ == "__main__":
    main()
