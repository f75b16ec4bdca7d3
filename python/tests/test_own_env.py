"""Meta-RL on a user's own Gymnasium meta-task (``meta_rl.train(env=factory)``): every
algorithm trains on it, the run is reproducible by its seed whatever the threads, worker
processes and copies stepped at once, a resumed run equals an uninterrupted one, the
meta-test runs on a test split, and a misbehaving environment gets a clear error that keeps
the last checkpoint and leaves no worker process behind."""

import functools
import json
import multiprocessing

import pandas as pd
import pytest

from metagrad import meta_rl

import meta_envs

TINY = dict(tasks=3, rollouts=2, horizon=10, hidden=[8], inner_steps=1)


def numbers(frame):
    return frame.drop(columns=["wall_s"])


def run(tmp_path, name, env=meta_envs.point_goal, iterations=2, algo="promp", seed=3, **kw):
    return meta_rl.train(env=env, algo=algo, iterations=iterations, seed=seed, out=tmp_path / name,
                         verbose=False, **dict(TINY, **kw))


@pytest.mark.parametrize("algo", meta_rl.ALGORITHMS)
def test_every_algorithm_trains_on_a_user_env(tmp_path, algo):
    hist = run(tmp_path, algo, algo=algo)
    assert len(hist) == 2
    assert {"pre_success", "post_success_1"} <= set(hist.columns)
    assert hist["pre_success"].between(0, 1).all()
    assert (hist["pre_return"] < 0).all()  # minus distances
    config = json.loads((tmp_path / algo / "config.json").read_text())
    assert config["settings"]["env"] == "meta_envs.point_goal"
    csv = pd.read_csv(tmp_path / algo / "progress.csv", float_precision="round_trip")
    pd.testing.assert_frame_equal(numbers(csv), numbers(hist), check_exact=True, check_dtype=False)


def test_same_seed_same_run_whatever_the_workers_threads_and_copies(tmp_path):
    want = numbers(run(tmp_path, "a", env=meta_envs.point_goal_truncated, iterations=3))
    for i, kw in enumerate([dict(env_workers=2), dict(threads=1, env_copies=2), dict(env_workers=1, env_copies=5)]):
        got = numbers(run(tmp_path, f"b{i}", env=meta_envs.point_goal_truncated, iterations=3, **kw))
        pd.testing.assert_frame_equal(got, want, check_exact=True, obj=str(kw))
    other = numbers(run(tmp_path, "c", env=meta_envs.point_goal_truncated, iterations=3, seed=4))
    assert not other["pre_return"].equals(want["pre_return"])
    assert multiprocessing.active_children() == []


def test_resume_equals_an_uninterrupted_run(tmp_path):
    straight = run(tmp_path, "straight", iterations=4, algo="trpo-maml")
    run(tmp_path, "split", iterations=2, algo="trpo-maml", env_workers=1)
    resumed = meta_rl.train(env=meta_envs.point_goal, algo="trpo-maml", iterations=4, seed=3, out=tmp_path / "split",
                            resume=True, verbose=False, **TINY)
    pd.testing.assert_frame_equal(numbers(resumed), numbers(straight), check_exact=True)
    # Another environment under the same name is another run: its settings are recorded.
    with pytest.raises(ValueError, match="settings differ"):
        meta_rl.train(env=meta_envs.point_goal_truncated, env_name="meta_envs.point_goal", algo="trpo-maml",
                      iterations=5, seed=3, out=tmp_path / "split", resume=True, verbose=False,
                      **dict(TINY, horizon=11))


def test_the_meta_test_runs_on_the_test_split(tmp_path):
    hist = run(tmp_path, "t", iterations=3, test_env=meta_envs.point_goal_truncated, test_every=2, test_tasks=2,
               test_episodes=2)
    assert hist["test_post_return"].notna().tolist() == [False, True, True]  # every 2 and after the last
    assert hist["test_post_success"].dropna().between(0, 1).all()
    again = run(tmp_path, "t2", iterations=3, test_env=meta_envs.point_goal_truncated, test_every=2, test_tasks=2,
                test_episodes=2, env_workers=2)
    pd.testing.assert_frame_equal(numbers(again), numbers(hist), check_exact=True)
    params = meta_rl.params(env=meta_envs.point_goal, test_env=meta_envs.point_goal, test_every=5, **TINY)
    assert params["meta_test"] == {"every": 5, "tasks": 3, "episodes": 3}


def test_compare_and_grid_runs_take_a_factory(tmp_path):
    factory = functools.partial(meta_envs.PointGoal, limit=6)
    summary = meta_rl.compare(env=factory, env_name="point-goal-6", algos=["promp", "trpo-maml"], seeds=[1, 2],
                              iterations=2, out=tmp_path / "g", verbose=False, jobs=2, **TINY)
    assert set(summary["algo"]) == {"promp", "trpo-maml"}
    assert (tmp_path / "g" / "paired.csv").exists() and (tmp_path / "g" / "curves.png").exists()
    runs = meta_rl.grid_runs(env=factory, env_name="point-goal-6", algos=["promp"], seeds=[1], iterations=2,
                             out=tmp_path / "g", **TINY)
    assert runs[0]["out"].endswith("promp/seed1")


def _message(tmp_path, name, env, **kw):
    with pytest.raises(ValueError) as e:
        run(tmp_path, name, env=env, iterations=4, **kw)
    return str(e.value)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_misbehaving_env_gets_a_clear_error(tmp_path, workers):
    m = _message(tmp_path, "shape", meta_envs.WrongShape, env_workers=workers)
    assert "WrongShape" in m and "step" in m and "shape (3,)" in m and "(4,)" in m, m
    m = _message(tmp_path, "nan", meta_envs.NanReward, env_workers=workers)
    assert "NanReward" in m and "non-finite reward" in m and "NaN" in m, m
    m = _message(tmp_path, "no-set-task", meta_envs.NoSetTask, env_workers=workers)
    assert "no method set_task()" in m, m
    m = _message(tmp_path, "global", meta_envs.GlobalRandom, env_workers=workers)
    assert "not reproducible" in m and "self.np_random" in m, m
    with pytest.raises(ValueError, match="flat gymnasium.spaces.Box"):
        run(tmp_path, "discrete", env=meta_envs.DiscreteActions, env_workers=workers)
    assert multiprocessing.active_children() == []


def test_an_env_that_raises_mid_run_keeps_the_last_checkpoint(tmp_path):
    meta_envs.RaisesInStep.episodes = 0
    m = _message(tmp_path, "raises", meta_envs.RaisesInStep)
    assert "RaisesInStep" in m and "RuntimeError(the simulator blew up)" in m and "copy" in m, m
    ck = json.loads((tmp_path / "raises" / "checkpoint.json").read_text())
    assert ck["state"]["iteration"] >= 1
    progress = pd.read_csv(tmp_path / "raises" / "progress.csv")
    assert len(progress) == ck["state"]["iteration"]


def test_unpicklable_tasks_and_a_dying_worker(tmp_path):
    m = _message(tmp_path, "pickle", meta_envs.Unpicklable, env_workers=1)
    assert "cannot be pickled" in m and "workers=0" in m, m
    run(tmp_path, "pickle-local", env=meta_envs.Unpicklable, iterations=1)  # fine in this process
    m = _message(tmp_path, "dies", meta_envs.Dies, env_workers=2)
    assert "worker process" in m and "exit code 3" in m, m
    assert multiprocessing.active_children() == []


def test_bad_arguments():
    with pytest.raises(TypeError, match="callable"):
        meta_rl.params(env=42)
    with pytest.raises(ValueError, match="env_name"):
        meta_rl.params(env="point-corners", env_name="x")
    with pytest.raises(ValueError, match="test_env"):
        meta_rl.params(env="point-corners", test_env=meta_envs.point_goal)
    with pytest.raises(ValueError, match="built-in environment's name"):
        meta_rl.params(env=meta_envs.point_goal, env_name="point-corners")
    with pytest.raises(ValueError, match="test-episodes"):
        meta_rl.params(env=meta_envs.point_goal, test_every=1, test_episodes=0)


def test_ctrl_c_stops_a_run_with_worker_processes_and_ends_them(tmp_path, interrupted):
    import textwrap
    from pathlib import Path

    out = tmp_path / "run"
    tests = Path(__file__).resolve().parent
    script = textwrap.dedent(
        f"""
        import multiprocessing, sys
        sys.path.insert(0, {str(tests)!r})
        import meta_envs
        from metagrad import meta_rl
        try:
            meta_rl.train(env=meta_envs.point_goal, algo="promp", iterations=1000, seed=1, out={str(out)!r},
                          verbose=False, tasks=10, rollouts=10, horizon=200, hidden=[8], env_workers=2)
        except KeyboardInterrupt:
            print("interrupted", len(multiprocessing.active_children()), flush=True)
            sys.exit(42)
        """
    )
    code, said, elapsed = interrupted(script, lambda p: (out / "checkpoint.json").exists(), settle=0.5)
    assert code == 42 and said == "interrupted 0"
    assert elapsed < 3.0, f"took {elapsed:.2f} s to stop"
    done = len(pd.read_csv(out / "progress.csv"))
    resumed = meta_rl.train(env=meta_envs.point_goal, algo="promp", iterations=done + 1, seed=1, out=out,
                            resume=True, verbose=False, tasks=10, rollouts=10, horizon=200, hidden=[8])
    assert len(resumed) == done + 1
