"""Meta-World (``metagrad.envs.metaworld``) in the environment a user gets from
``pip install "./python[metaworld]"``: metagrad's MuJoCo engine (3.17.0, inside its package)
and Meta-World's pinned MuJoCo Python package (3.3.0) live in one process; ML1 and ML10
train reproducibly, with success rates and a meta-test on the held-out split. Run with the
Meta-World virtual environment (scripts/test.sh: .deps/venv-metaworld)."""

import json
import multiprocessing

import mujoco
import numpy as np
import pandas as pd
import pytest

import metaworld
from metagrad import envs, meta_rl
from metagrad.envs import metaworld as mw

TINY = dict(tasks=2, rollouts=2, horizon=30, hidden=[8], inner_steps=1)


def test_both_mujoco_engines_live_in_one_process():
    assert mujoco.__version__ == "3.3.0"
    cheetah = envs.make_vec("half-cheetah-rand-direc", 2)  # metagrad's own engine, 3.17.0
    cheetah.reset(seed=1)
    obs, rew, term, trunc, _ = cheetah.step(np.zeros((2, 6), dtype=np.float32))
    assert obs.shape == (2, 17) and np.isfinite(rew).all()
    env = mw.ml1("reach-v3")()
    env.set_task(env.sample_tasks(1)[0])
    o, _ = env.reset(seed=0)
    o2, r, te, tr, info = env.step(np.zeros(4, dtype=np.float32))
    assert o.shape == (39,) and "success" in info and np.isfinite(r)


def test_task_sampling_follows_the_benchmark():
    ml1 = mw.ml1("reach-v3", seed=3)
    env = ml1()
    bench = metaworld.ML1("reach-v3", seed=3)
    env.np_random = np.random.Generator(np.random.PCG64(5))
    tasks = env.sample_tasks(7)
    train = {t.data for t in bench.train_tasks}
    assert all(t.data in train for t in tasks)
    test = ml1.test_split()()
    assert {t.data for t in test.sample_tasks(5)} <= {t.data for t in bench.test_tasks}
    ml10 = mw.ml10()()
    names = [t.env_name for t in ml10.sample_tasks(20)]
    assert names[:10] == list(metaworld.ML10(seed=0).train_classes) and names[10:] == names[:10]
    for t in ml10.sample_tasks(3):  # switching classes
        ml10.set_task(t)
        assert ml10.reset()[0].shape == (39,)
    held_out = mw.ml10(split="test")()
    assert {t.env_name for t in held_out.sample_tasks(10)} == set(metaworld.ML10(seed=0).test_classes)


def test_ml1_trains_reproducibly_with_success_and_the_meta_test(tmp_path):
    train = mw.ml1("reach-v3")
    kw = dict(env=train, test_env=train.test_split(), algo="promp", iterations=2, seed=1, verbose=False,
              test_every=1, test_tasks=2, test_episodes=1, **TINY)
    a = meta_rl.train(out=tmp_path / "a", **kw)
    b = meta_rl.train(out=tmp_path / "b", env_workers=2, env_copies=3, **kw)
    pd.testing.assert_frame_equal(a.drop(columns=["wall_s"]), b.drop(columns=["wall_s"]), check_exact=True)
    for col in ["pre_success", "post_success_1", "test_pre_success", "test_post_success"]:
        assert a[col].between(0, 1).all(), col
    config = json.loads((tmp_path / "a" / "config.json").read_text())["settings"]
    assert config["env"] == "metaworld/ML1-reach-v3"
    assert config["env_config"]["reward_function_version"] == "v2"
    assert config["env_config"]["benchmark"] == "ML1"
    with pytest.raises(ValueError, match="settings differ"):
        meta_rl.train(out=tmp_path / "a", resume=True, **dict(kw, env=mw.ml1("reach-v3", reward_function_version="v1"),
                                                               iterations=3))
    assert multiprocessing.active_children() == []


def test_ml10_trains(tmp_path):
    hist = meta_rl.train(env=mw.ml10(), algo="trpo-maml", iterations=1, seed=2, out=tmp_path / "ml10",
                         verbose=False, **dict(TINY, tasks=3))
    assert len(hist) == 1 and hist["pre_success"].between(0, 1).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="not a Meta-World v3 task"):
        mw.ml1("reach-v2")
    with pytest.raises(ValueError, match="split"):
        mw.ml1("reach-v3", split="eval")
    with pytest.raises(ValueError, match="reward_function_version"):
        mw.ml10(reward_function_version="v3")
    env = mw.ml1("push-v3")()
    with pytest.raises(ValueError, match="not a task of this split"):
        env.set_task(mw.ml1("reach-v3")().sample_tasks(1)[0])
