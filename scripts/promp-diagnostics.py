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


def read(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = {}
    for key in rows[0]:
        col = []
        for r in rows:
            v = r[key]
            col.append(float(v) if v not in ("", None) else math.nan)
        out[key] = col
    return out


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [PANELS[n] for n in names]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.0 * len(panels)), sharex=True, squeeze=False)
    axes = axes[:, 0]
    for spec in args.runs:
        folder, _, label = spec.partition("=")
        d = read(folder.rstrip("/") + "/progress.csv")
        k = max(int(c.rsplit("_", 1)[1]) for c in d if c.startswith("post_return_"))
        it = d["iteration"]
        keep = [i for i, x in enumerate(it) if args.start <= x <= args.end]
        for ax, (title, get, log) in zip(axes, panels):
            y = get(d, k)
            ax.plot([it[i] for i in keep], [y[i] for i in keep], label=label or folder, lw=1)
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
