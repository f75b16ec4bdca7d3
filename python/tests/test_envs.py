"""metagrad.envs: the meta-task environments vectorised in Rust, with Gymnasium's API —
shapes and dtypes, seeding, batch = single copies whatever the thread count, Gymnasium's
autoreset semantics, the point dynamics of docs/theory.md#environments, HalfCheetah against Gymnasium's
HalfCheetah-v5, errors."""

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from metagrad import envs

CHEETAH = "half-cheetah-rand-direc"


def random_actions(env, steps, seed):
    env.action_space.seed(seed)
    return [env.action_space.sample() for _ in range(steps)]


def rollout(env, actions, **reset):
    """Observations, rewards and flags of a reset followed by the given steps."""
    obs, _ = env.reset(**reset)
    out = [obs]
    for a in actions:
        o, r, te, tr, _ = env.step(a)
        out += [o, r, te, tr]
    return out


def assert_same(xs, ys):
    assert len(xs) == len(ys)
    for x, y in zip(xs, ys):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name", envs.NAMES)
def test_spaces_shapes_and_dtypes(name):
    env = envs.make_vec(name, 3)
    assert isinstance(env, gymnasium.vector.VectorEnv)
    assert env.num_envs == 3 and env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    d, k = env.single_observation_space.shape[0], env.single_action_space.shape[0]
    assert env.observation_space.shape == (3, d) and env.action_space.shape == (3, k)
    assert env.single_observation_space.dtype == np.float64 and env.single_action_space.dtype == np.float32
    obs, info = env.reset(seed=1)
    assert info == {} and obs.shape == (3, d) and obs.dtype == np.float64 and obs in env.observation_space
    obs, rew, term, trunc, info = env.step(env.action_space.sample())  # float32 actions
    assert obs.shape == (3, d) and rew.shape == (3,) and rew.dtype == np.float64
    assert term.dtype == np.bool_ and trunc.dtype == np.bool_ and info == {}
    assert env.tasks.shape == (3, env.task_dim)
    env.close()


def test_half_cheetah_spaces_are_gymnasiums():
    ours, theirs = envs.make_vec(CHEETAH, 2), gymnasium.make("HalfCheetah-v5")
    assert ours.single_action_space == theirs.action_space
    assert ours.single_observation_space == theirs.observation_space


def test_seeded_reset_is_deterministic_and_reset_continues_the_stream():
    env = envs.make_vec("point-corners", 4)
    acts = random_actions(env, 5, 0)
    first = rollout(env, acts, seed=11)
    assert_same(first, rollout(env, acts, seed=11))
    again, _ = env.reset()  # continues each copy's stream
    assert not np.array_equal(again, first[0])
    assert not np.array_equal(env.reset(seed=12)[0], first[0])
    # seed s seeds copy i with s + i (as Gymnasium): copy 1 of seed 11 is copy 0 of seed 12.
    np.testing.assert_array_equal(env.reset(seed=12)[0][0], first[0][1])
    per_copy, _ = env.reset(seed=[11, None, 13, 14])
    np.testing.assert_array_equal(per_copy[[0, 2, 3]], first[0][[0, 2, 3]])


@pytest.mark.parametrize("name", ["point-corners", CHEETAH, "hopper-rand-params"])
def test_batch_equals_single_copies_whatever_the_threads(name):
    n, steps = 5, 25
    batch = envs.make_vec(name, n, horizon=9, num_threads=1)
    tasks = batch.sample_tasks(n, seed=4)
    batch.set_task(tasks)
    rng = np.random.default_rng(0)
    acts = [rng.uniform(-1.5, 1.5, batch.action_space.shape) * batch.single_action_space.high for _ in range(steps)]
    ref = rollout(batch, acts, seed=100)
    for threads in (2, None):
        other = envs.make_vec(name, n, horizon=9, num_threads=threads)
        other.set_task(tasks)
        assert_same(ref, rollout(other, acts, seed=100))
    for i in range(n):
        one = envs.make_vec(name, 1, horizon=9)
        one.set_task(tasks[i])
        single = rollout(one, [a[i : i + 1] for a in acts], seed=100 + i)
        assert_same([x[i : i + 1] for x in ref], single)
    if name == "hopper-rand-params":
        assert any(x.any() for x in ref[3::4]), "some copy terminated (autoreset exercised)"


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_autoreset_as_gymnasiums_sync_vector_env(mode):
    """Gymnasium's own SyncVectorEnv over single copies (make) gives the same arrays and
    infos as the Rust batch: same autoreset, seeding and truncation semantics."""
    n, steps = 3, 40
    ours = envs.make_vec("hopper-rand-params", n, horizon=12, autoreset_mode=mode)
    theirs = SyncVectorEnv([lambda: envs.make("hopper-rand-params", horizon=12)] * n, autoreset_mode=mode)
    acts = random_actions(ours, steps, 3)
    o1, _ = ours.reset(seed=7)
    o2, _ = theirs.reset(seed=7)
    np.testing.assert_array_equal(o1, o2)
    ended = 0
    for a in acts:
        r1, r2 = ours.step(a), theirs.step(a)
        for x, y in zip(r1[:4], r2[:4]):
            np.testing.assert_array_equal(x, y)
        assert r1[4].keys() == r2[4].keys()
        if "final_obs" in r1[4]:
            np.testing.assert_array_equal(r1[4]["_final_obs"], r2[4]["_final_obs"])
            for i in np.flatnonzero(r1[4]["_final_obs"]):
                np.testing.assert_array_equal(r1[4]["final_obs"][i], r2[4]["final_obs"][i])
        ended += int((r1[2] | r1[3]).sum())
    assert ended >= n


def test_disabled_autoreset_and_reset_mask():
    env = envs.make_vec("point-corners", 2, horizon=2, autoreset_mode="Disabled")
    env.reset(seed=0)
    env.step(np.zeros((2, 2)))
    _, _, _, trunc, _ = env.step(np.zeros((2, 2)))
    assert trunc.all()
    with pytest.raises(ValueError, match="copy 0.*autoreset is disabled"):
        env.step(np.zeros((2, 2)))
    env.reset(options={"reset_mask": np.array([True, False])})
    with pytest.raises(ValueError, match="copy 1"):
        env.step(np.zeros((2, 2)))
    env.reset(options={"reset_mask": np.array([False, True])})
    env.step(np.zeros((2, 2)))


def test_point_dynamics_match_notes():
    """docs/theory.md#environments: vel += clip(a, ±0.1), pos += vel,
    reward max(2 − ‖pos − g‖, 0)."""
    env = envs.make_vec("point-corners", 4)
    # Three corner goals and one near the start, so that the reward's positive branch is met.
    goals = np.array([[-2.0, -2.0], [2.0, -2.0], [-2.0, 2.0], [0.5, 0.5]])
    env.set_task(goals)
    obs, _ = env.reset(seed=3)
    assert (np.abs(obs[:, :2]) <= 0.2).all() and (np.abs(obs[:, 2:]) <= 0.1).all()
    pos, vel = obs[:, :2].copy(), obs[:, 2:].copy()
    rng = np.random.default_rng(1)
    positive = 0
    for _ in range(30):
        a = rng.uniform(-0.3, 0.3, (4, 2))
        obs, rew, term, trunc, _ = env.step(a)
        vel = vel + np.clip(a, -0.1, 0.1)
        pos = pos + vel
        dist = np.sqrt((pos[:, 0] - goals[:, 0]) ** 2 + (pos[:, 1] - goals[:, 1]) ** 2)
        np.testing.assert_array_equal(obs, np.hstack([pos, vel]))
        np.testing.assert_array_equal(rew, np.maximum(2.0 - dist, 0.0))
        assert not term.any()
        positive += int((rew > 0).sum())
    assert positive >= 10


def test_half_cheetah_matches_gymnasium_v5():
    """Same state and actions as Gymnasium's HalfCheetah-v5: same observations (up to
    round-off: Gymnasium starts at x = 0, ours at a noisy x); rewards differ only by the
    task's definition: d·v − 0.05‖a‖² here, v − 0.1‖a‖² there."""
    ours = envs.make_vec(CHEETAH, 2)
    ours.set_task([[1.0], [-1.0]])
    obs, _ = ours.reset(seed=[5, 5])
    np.testing.assert_array_equal(obs[0], obs[1])
    gym_env = gymnasium.make("HalfCheetah-v5").unwrapped
    gym_env.reset(seed=0)
    gym_env.set_state(np.concatenate([[0.0], obs[0, :8]]), obs[0, 8:])
    rng = np.random.default_rng(2)
    for _ in range(20):
        a = rng.uniform(-1, 1, 6).astype(np.float32)
        o, r, term, trunc, _ = ours.step(np.stack([a, a]))
        go, _, gterm, _, info = gym_env.step(a.astype(np.float64))  # its control cost in float64, as ours
        np.testing.assert_allclose(o[0], go, rtol=0, atol=1e-8)
        np.testing.assert_array_equal(o[0], o[1])
        expect = np.array([1.0, -1.0]) * info["reward_forward"] + 0.5 * info["reward_ctrl"]
        np.testing.assert_allclose(r, expect, rtol=1e-9, atol=1e-9)
        assert not term.any() and not gterm


def test_tasks_sampling_and_setting():
    env = envs.make_vec("ant-rand-goal", 3)
    t = env.sample_tasks(6, seed=1)
    assert t.shape == (6, 2) and (np.hypot(t[:, 0], t[:, 1]) <= 3).all()
    np.testing.assert_array_equal(t, envs.make_vec("ant-rand-goal", 1).sample_tasks(6, seed=1))
    assert not np.array_equal(t, env.sample_tasks(6, seed=1, iteration=1))
    env.set_task(t[0])
    np.testing.assert_array_equal(env.tasks, np.tile(t[0], (3, 1)))
    env.set_task(t[:3])
    np.testing.assert_array_equal(env.tasks, t[:3])
    d = envs.make_vec(CHEETAH, 1).sample_tasks(50, seed=0)
    assert set(d.ravel()) == {-1.0, 1.0}
    # A randomised-parameter task changes the dynamics.
    hop = envs.make_vec("hopper-rand-params", 2)
    hop.set_task(np.vstack([np.zeros(hop.task_dim), hop.sample_tasks(1, seed=3)[0]]))
    hop.reset(seed=[1, 1])
    _, r, _, _, _ = hop.step(np.full((2, 3), 0.5))
    assert r[0] != r[1]


def test_bad_input_raises_naming_the_argument():
    env = envs.make_vec(CHEETAH, 2)
    with pytest.raises(ValueError, match="reset\\(\\) must be called"):
        env.step(np.zeros((2, 6)))
    obs, _ = env.reset(seed=0)
    with pytest.raises(ValueError, match=r"actions.*\[2, 6\].*\[2, 5\]"):
        env.step(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="actions: expected a 2-D array"):
        env.step(np.zeros(6))
    bad = np.zeros((2, 6))
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"actions\[1, 2\].*NaN"):
        env.step(bad)
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match=r"actions\[1, 2\].*inf"):
        env.step(bad)
    with pytest.raises(TypeError, match="actions"):
        env.step(np.zeros((2, 6), dtype=complex))
    with pytest.raises(TypeError, match="actions"):
        env.step([["a"] * 6] * 2)
    o, *_ = env.step(np.zeros((2, 6), dtype=np.int64))  # integers convert without loss
    assert o.shape == (2, 17)
    with pytest.raises(ValueError, match="direction must be \\+1 or -1, got 0.5"):
        env.set_task([0.5])
    with pytest.raises(ValueError, match=r"task\[1\].*direction"):
        env.set_task([[1.0], [2.0]])
    np.testing.assert_array_equal(env.tasks, [[1.0], [1.0]])  # refused: nothing changed
    with pytest.raises(ValueError, match=r"task: expected shape \(1,\)"):
        env.set_task([1.0, 1.0])
    with pytest.raises(ValueError, match=r"task\[0\].*NaN"):
        env.set_task([np.nan])
    with pytest.raises(ValueError, match="unit vector"):
        envs.make_vec("humanoid-rand-direc-2d", 1).set_task([1.0, 1.0])
    with pytest.raises(ValueError, match="exponent 0 is 4"):
        envs.make_vec("hopper-rand-params", 1).set_task(np.r_[4.0, np.zeros(40)])
    with pytest.raises(ValueError, match="name: unknown environment 'HalfCheetah-v5'"):
        envs.make("HalfCheetah-v5")
    with pytest.raises(TypeError, match="name"):
        envs.make(3)
    for kwargs, exc, pattern in [
        (dict(num_envs=0), ValueError, "num_envs"),
        (dict(num_envs=10**9), ValueError, "num_envs.*100000"),
        (dict(num_envs=2.0), TypeError, "num_envs"),
        (dict(horizon=0), ValueError, "horizon"),
        (dict(num_threads=0), ValueError, "num_threads"),
        (dict(autoreset_mode="next"), ValueError, "autoreset_mode"),
        (dict(assets_dir="/nonexistent"), ValueError, "assets_dir"),
    ]:
        with pytest.raises(exc, match=pattern):
            envs.make_vec(CHEETAH, **kwargs)
    with pytest.raises(ValueError, match="half_cheetah.xml"):
        envs.make_vec(CHEETAH, assets_dir=envs.__file__.rsplit("/", 1)[0])
    with pytest.raises(ValueError, match="seed"):
        env.reset(seed=-1)
    with pytest.raises(TypeError, match="seed"):
        env.reset(seed=1.5)
    with pytest.raises(ValueError, match="seed"):
        env.reset(seed=[1])
    with pytest.raises(ValueError, match="options"):
        env.reset(options={"bogus": 1})
    with pytest.raises(ValueError, match="reset_mask"):
        env.reset(options={"reset_mask": np.zeros(2, dtype=bool)})
    with pytest.raises(TypeError, match="reset_mask"):
        env.reset(options={"reset_mask": [True, False]})
    with pytest.raises(ValueError, match="reset_mask"):
        env.reset(options={"reset_mask": np.ones(3, dtype=bool)})
    with pytest.raises(ValueError, match="num_tasks: must be at least 0"):
        env.sample_tasks(-1, seed=0)


@pytest.mark.filterwarnings("ignore:.*Box observation space m")  # unbounded, as Gymnasium's MuJoCo envs
@pytest.mark.parametrize("name", ["point-corners", CHEETAH])
def test_single_env_passes_gymnasiums_env_checker(name):
    env = envs.make(name)
    assert isinstance(env, gymnasium.Env)
    check_env(env, skip_render_check=True)


def test_gymnasium_vector_wrappers_run():
    env = gymnasium.wrappers.vector.RecordEpisodeStatistics(envs.make_vec("point-corners", 3, horizon=4))
    env.reset(seed=0)
    infos = {}
    for _ in range(4):
        *_, infos = env.step(env.action_space.sample())
    assert infos["_episode"].all() and (infos["episode"]["l"] == 4).all()


def test_gymnasium_naming_one_env_and_the_vector_env():
    one, vec = envs.make("point-corners", horizon=5), envs.make_vec("point-corners", 3, horizon=5)
    assert isinstance(one, envs.MetaTaskEnv) and isinstance(vec, envs.MetaVectorEnv)
    assert (vec.num_envs, one.horizon) == (3, 5)
    # Copy 0 of the vector env reset with seed s is the one env reset with seed s.
    np.testing.assert_array_equal(one.reset(seed=7)[0], vec.reset(seed=7)[0][0])


def test_old_names_still_work_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="make_vec"):
        old = envs.make("point-corners", 2)
    assert isinstance(old, envs.MetaVectorEnv) and old.num_envs == 2
    with pytest.warns(DeprecationWarning, match="make_vec"):
        assert isinstance(envs.make("point-corners", num_envs=3, num_threads=1), envs.MetaVectorEnv)
    with pytest.warns(DeprecationWarning, match=r"envs\.make\(name\)"):
        assert isinstance(envs.make_env("point-corners"), envs.MetaTaskEnv)


@pytest.mark.filterwarnings("ignore:.*Box observation space m")
def test_environments_are_registered_with_gymnasium():
    assert envs.GYM_IDS[CHEETAH] == "metagrad/HalfCheetahRandDirec-v0"
    assert envs.GYM_IDS["humanoid-rand-direc-2d"] == "metagrad/HumanoidRandDirec2d-v0"
    assert envs.GYM_IDS["ant-rand-direc-2d"] == "metagrad/AntRandDirec2d-v0"
    assert all(i in gymnasium.registry for i in envs.GYM_IDS.values())
    env = gymnasium.make("metagrad/PointCorners-v0", horizon=4)
    assert isinstance(env.unwrapped, envs.MetaTaskEnv) and env.unwrapped.horizon == 4
    obs, _ = env.reset(seed=3)
    assert obs.shape == env.observation_space.shape == (env.unwrapped.observation_space.shape[0],)
    vec = gymnasium.make_vec("metagrad/PointCorners-v0", num_envs=2, vectorization_mode="vector_entry_point")
    assert isinstance(vec, envs.MetaVectorEnv) and vec.num_envs == 2


def test_tasks_as_in_learn2learn():
    env = envs.make("point-corners")
    env.reset(seed=5)
    tasks = env.sample_tasks(4)
    assert tasks.shape == (4, 2)
    env.set_task(tasks[1])
    np.testing.assert_array_equal(env.get_task(), tasks[1])
    # Without a seed, tasks come from the env's own stream: reseeding repeats them.
    env.reset(seed=5)
    np.testing.assert_array_equal(env.sample_tasks(4), tasks)
    vec = envs.make_vec("point-corners", 2)
    vec.set_task(tasks[:2])
    np.testing.assert_array_equal(vec.get_task(), tasks[:2])
    np.testing.assert_array_equal(vec.sample_tasks(3, seed=1), envs.make("point-corners").sample_tasks(3, seed=1))
