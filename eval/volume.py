#!/usr/bin/env python3
"""Would check volume separate a campaign from a mistaken report?

Issue 15 suggests counting how many near-copies of a reported message were
checked recently: bulk is evidence, a personal message is not. This replays
the shared harness's campaign scenario with its own random streams (seed,
reporters, 2 % noise: the same draws as `replay.py campaign --noise 0.02`,
report policy "all"), and for every spam with an earlier reported near-copy
and every ham with an earlier noise-reported near-copy (Jaccard >= 0.5 over
the harness's word 5-shingles) prints how many near-copies had been checked
by then (the message itself included) and how many reporters stood behind
them. No system is asked anything: it is the evidence any network could see.

    python3 eval/volume.py [--corpus target/corpus] [--split dev] [--seed 1]
"""

import argparse
import collections
import os
import sys

SHARED = os.environ.get("STARLING_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
sys.path.insert(0, os.path.join(SHARED, "eval"))

import random  # noqa: E402

from replay import NEAR_DUP_JACCARD, NearDupIndex, honest_reporters, load_split, shingles_of, time_order  # noqa: E402


def near(index, shingles):
    """Indices of earlier messages at Jaccard >= NEAR_DUP_JACCARD."""
    if not shingles:
        return []
    overlap = collections.Counter()
    for s in shingles:
        overlap.update(index.inv.get(s, ()))
    n = len(shingles)
    return [i for i, k in overlap.items() if k / (n + len(index.sets[i]) - k) >= NEAR_DUP_JACCARD]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="target/corpus")
    ap.add_argument("--split", default="dev")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--p-report", type=float, default=0.3)
    ap.add_argument("--noise", type=float, default=0.02)
    ap.add_argument("--honest-orgs", type=int, default=3)
    ap.add_argument("--honest-users", type=int, default=20)
    args = ap.parse_args()
    stream = time_order(load_split(args.corpus, args.split, "date"))
    rng = random.Random(f"{args.seed}/campaign-report")
    who_rng = random.Random(f"{args.seed}/campaign-reporter")
    noise_rng = random.Random(f"{args.seed}/campaign-noise")
    honest = honest_reporters(args)
    index, reporter_of = NearDupIndex(), []
    spam, ham = collections.Counter(), collections.Counter()
    for m in stream:
        shingles = shingles_of(m.path)
        earlier = near(index, shingles)
        reporters = {reporter_of[i] for i in earlier if reporter_of[i]}
        volume = len(earlier) + 1
        if m.label == "spam":
            draw = rng.random() < args.p_report
            reporter = who_rng.choice(honest)
            if reporters:
                spam[(volume, len(reporters))] += 1
            mine = reporter if draw else None
        else:
            noisy = noise_rng.random() < args.noise
            reporter = noise_rng.choice(honest)
            if reporters:
                ham[(volume, len(reporters))] += 1
            mine = reporter if noisy else None
        index.add(shingles, mine is not None)
        reporter_of.append(mine)
    print(f"{args.split}, seed {args.seed}: near-copies checked so far (volume) and distinct earlier reporters")
    print("volume  reporters  spam with a reported near-copy  ham with a noise-reported near-copy")
    for key in sorted(set(spam) | set(ham)):
        print(f"{key[0]:>6}  {key[1]:>9}  {spam[key]:>30}  {ham[key]:>35}")
    print(f"total{'':>16}{sum(spam.values()):>30}  {sum(ham.values()):>35}")


if __name__ == "__main__":
    main()
