#!/usr/bin/env python3
"""Plot the per-iteration diagnostics of ProMP runs (docs/experiments/promp-breakdown.md).

    python scripts/promp-diagnostics.py OUT.png RUN_DIR[=LABEL] ... [--from I] [--to J]
                                        [--panels return,ratio,kl,clip,step,gain,logstd]

Reads each run's progress.csv (written by `metagrad meta-rl`, with the diagnostics columns
log_std, inner_kl_k, max_inner_ratio_dev_k, clip_fraction, outer_step_norm,
adaptation_gain) and draws, against the iteration, the post-update return and each
diagnostic (or the panels named by --panels, in that order), one line per run. Needs
matplotlib.
"""

import argparse
import csv
import math
import os
import sys


# Panel name: (title, the column of a run's data for K inner steps, log scale).
PANELS = {
    "return": ("post-update return", lambda d, k: d[f"post_return_{k}"], False),
    "ratio": ("max |ρ − 1| on the inner data (max over rounds)", lambda d, k: d["max_inner_ratio_dev"], True),
    "kl": ("KL on the last inner round's data", lambda d, k: d[f"inner_kl_{k}"], True),
    "clip": ("post-update clip fraction", lambda d, k: d["clip_fraction"], False),
    "step": ("‖Δθ‖ of the Adam steps", lambda d, k: d["outer_step_norm"], True),
    "gain": ("adaptation gain ‖Δθ_K‖/‖Δθ‖", lambda d, k: d["adaptation_gain"], False),
    "logstd": ("log σ (pre-update policy, mean)", lambda d, k: d["log_std"], False),
}


class InputError(Exception):
    """A run folder or its progress.csv that cannot be plotted; the message names it."""


def read(path):
    """The columns of a progress.csv as lists of floats (empty cells NaN)."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise InputError(f"{path}: cannot read it ({e.strerror}); give a run folder written by `metagrad meta-rl`")
    if not rows:
        raise InputError(f"{path}: no iterations in it")
    out = {key: [] for key in rows[0]}
    for line, r in enumerate(rows, start=2):
        for key in out:
            v = r[key]
            try:
                out[key].append(float(v) if v not in ("", None) else math.nan)
            except ValueError:
                raise InputError(f"{path}, line {line}: column {key} = {v!r} is not a number")
    return out


def load(spec, panels):
    """One run of the command line (`FOLDER[=LABEL]`): its label, columns and number of
    inner steps K, with every column the panels need checked to be present."""
    folder, _, label = spec.partition("=")
    path = folder.rstrip("/") + "/progress.csv"
    d = read(path)
    ks = [c.rsplit("_", 1)[1] for c in d if c.startswith("post_return_")]
    if "iteration" not in d or not ks or not all(k.isdigit() for k in ks):
        raise InputError(f"{path}: no iteration / post_return_K columns; is it a meta-RL run's progress.csv?")
    k = max(int(x) for x in ks)
    for name in panels:
        try:
            PANELS[name][1](d, k)
        except KeyError as e:
            raise InputError(
                f"{path}: panel {name} needs column {e.args[0]}, which this run lacks "
                "(runs before the diagnostics columns have only return and ratio)"
            )
    return label or folder, d, k


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("runs", nargs="+", help="run folder, optionally =label")
    ap.add_argument("--from", dest="start", type=int, default=0)
    ap.add_argument("--to", dest="end", type=int, default=10**9)
    ap.add_argument("--panels", default=",".join(PANELS), help="comma-separated: " + ", ".join(PANELS))
    args = ap.parse_args()
    names = [p.strip() for p in args.panels.split(",") if p.strip()]
    unknown = [p for p in names if p not in PANELS]
    if unknown or not names:
        ap.error(f"--panels: unknown panel(s) {unknown or args.panels!r}; choose from {', '.join(PANELS)}")
    try:
        runs = [load(spec, names) for spec in args.runs]
    except InputError as e:
        ap.error(str(e))
    if not any(args.start <= x <= args.end for _, d, _ in runs for x in d["iteration"]):
        ap.error(f"--from {args.start} --to {args.end}: no run has an iteration in that range")
    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(folder):
        ap.error(f"{args.out}: the folder {folder} does not exist")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [PANELS[n] for n in names]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.0 * len(panels)), sharex=True, squeeze=False)
    axes = axes[:, 0]
    for label, d, k in runs:
        it = d["iteration"]
        keep = [i for i, x in enumerate(it) if args.start <= x <= args.end]
        for ax, (title, get, log) in zip(axes, panels):
            y = get(d, k)
            ax.plot([it[i] for i in keep], [y[i] for i in keep], label=label, lw=1)
            ax.set_title(title, fontsize=9)
            if log:
                ax.set_yscale("log")
    axes[0].legend(fontsize=8)
    axes[-1].set_xlabel("iteration")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
