"""Meta-World ML1 with metagrad's exact estimators: ProMP, ProMP-TayPO-2 and TRPO-MAML on
one ML1 task, 3 seeds each, with the meta-test on the held-out goals every 10 iterations.

Batch (per iteration): 20 tasks × 10 episodes × 500 steps (Meta-World's episode length)
before and after one inner step, i.e. 200k environment steps; the meta-test: 10 held-out
tasks, adapted on 10 episodes each, then 3 evaluation episodes each. Resumable: the same
command with a larger --iterations continues every run from its checkpoint.

    .deps/venv-metaworld/bin/python python/examples/metaworld_ml1.py --task reach-v3 \
        --iterations 50 --out runs/metaworld_ml1_reach
"""

import argparse

from metagrad import meta_rl
from metagrad.envs import metaworld as mw


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="reach-v3", help="Meta-World v3 task name")
    p.add_argument("--algos", default="promp,promp-taypo2,trpo-maml")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--iterations", type=int, default=50)
    p.add_argument("--out", default="results/metaworld_ml1")
    p.add_argument("--env-workers", type=int, default=2, help="worker processes stepping Meta-World")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args()
    train = mw.ml1(a.task)
    summary = meta_rl.compare(
        env=train, test_env=train.test_split(), algos=a.algos.split(","),
        seeds=[int(s) for s in a.seeds.split(",")], iterations=a.iterations, out=a.out,
        tasks=20, rollouts=10, horizon=mw.HORIZON, test_every=10, test_tasks=10, test_episodes=3,
        env_workers=a.env_workers, threads=a.threads,
    )
    print(summary.to_string())


if __name__ == "__main__":
    main()
