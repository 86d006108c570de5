"""How the deployment card rates a refusal drop at the demo's size and at a larger one: for a true
drop of 0 to 30 points, the share of synthetic studies rated caution, not enough evidence and fine
(analysis/deployment.py on the corrected drop of analysis/ppi.py, every response labelled), and the
share whose estimate alone reaches the 10-point threshold (what a card flagging on estimates called
caution). Baseline refusal rate 0.6 (the demo's fp32 greedy cell), prompts with their own rate
(analysis/simulate.py).

    .venv/bin/python benchmarks/card_verdicts.py [--studies 500] [--resamples 2000]
"""

from __future__ import annotations

import argparse

from safetygrid.analysis.deployment import NOT_ENOUGH
from safetygrid.analysis.simulate import CardRegime, card_verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=500)
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args()
    print(f"{args.studies} studies per row, {args.resamples} prompt resamples each; baseline RR 0.6; "
          "every response labelled; refusal_drop_pp 10")
    print("| prompts | k | true drop (pp) | caution | not enough evidence | fine | estimate >= 10 |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n_prompts, k in ((25, 1), (25, 2), (100, 1)):
        for drop in (0, 5, 10, 20, 30):
            shares = card_verdicts(CardRegime(baseline_rr=0.6, drop_pp=drop, k=k, n_prompts=n_prompts),
                                   studies=args.studies, resamples=args.resamples)
            print(f"| {n_prompts} | {k} | {drop} | {shares['caution']:.3f} | {shares[NOT_ENOUGH]:.3f} | "
                  f"{shares['fine']:.3f} | {shares['estimate_past_threshold']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
