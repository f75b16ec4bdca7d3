"""TabularProblem: the same numbers as `metagrad estimate`, bit for bit; arrays in, dtype
conversion at the boundary, errors that name the argument and the value."""

import json

import numpy as np
import pytest

import metagrad

ESTIMATORS = ["is", "dr", "dr-trunc", "taypo-1", "taypo-2", "taypo-3", "lvc", "maml"]


def arrays(raw: dict) -> dict:
    """The keyword arguments of TabularProblem for a problem file's contents (trajectories
    of unequal length padded with -1 / NaN, which must be ignored)."""
    trajs = raw["trajectories"]
    n, t = len(trajs), max(len(tr["actions"]) for tr in trajs)
    states = np.full((n, t + 1), -1, dtype=np.int64)
    actions = np.full((n, t), -1, dtype=np.int64)
    rewards = np.full((n, t), np.nan)
    for i, tr in enumerate(trajs):
        k = len(tr["actions"])
        states[i, : k + 1], actions[i, :k], rewards[i, :k] = tr["states"], tr["actions"], tr["rewards"]
    kw = dict(
        transitions=np.array(raw["transitions"]),
        rewards=np.array(raw["rewards"]),
        theta=np.array(raw["theta"]),
        behaviour=np.array(raw["behaviour"]),
        gamma=raw["gamma"],
        start_state=raw["start_state"],
        states=states,
        actions=actions,
        trajectory_rewards=rewards,
        lengths=[len(tr["actions"]) for tr in trajs],
    )
    critic = raw.get("critic") or {}
    if "state_values" in critic:
        kw["state_values"] = np.array(critic["state_values"])
    if "action_values" in critic:
        kw["action_values"] = np.array(critic["action_values"])
    return kw


@pytest.fixture(scope="module")
def raw(example_problem):
    raw = json.loads(example_problem.read_text())
    # Unequal lengths exercise the padding: shorten every third trajectory.
    for i, tr in enumerate(raw["trajectories"]):
        if i % 3 == 0:
            k = 5 + i % 7
            tr["states"], tr["actions"], tr["rewards"] = tr["states"][: k + 1], tr["actions"][:k], tr["rewards"][:k]
    return raw


def assert_bit_equal(ours: dict, cli: dict):
    assert ours["value"] == cli["value"]
    assert np.array_equal(ours["gradient"], np.array(cli["gradient"]))
    assert np.array_equal(ours["hessian"], np.array(cli["hessian"]))


@pytest.mark.parametrize("critic", ["state", "action"])
def test_estimates_equal_the_cli_bit_for_bit(cli, raw, tmp_path, critic):
    raw = json.loads(json.dumps(raw))
    if critic == "action":
        v = raw["critic"]["state_values"]
        rng = np.random.default_rng(0)
        q = [[v[x] + rng.normal() for _ in range(len(raw["rewards"][0]))] for x in range(len(v))]
        raw["critic"] = {"action_values": q}
    names = [e for e in ESTIMATORS if not (critic == "action" and e == "dr-trunc")]
    path = tmp_path / "problem.json"
    path.write_text(json.dumps(raw))
    out = tmp_path / "out.json"
    cli("estimate", "--input", path, "--estimators", ",".join(names), "--truncation", "0.7", "--output", out)
    report = json.loads(out.read_text())
    from_arrays = metagrad.TabularProblem(**arrays(raw))
    from_file = metagrad.TabularProblem.load(path)
    for e in names:
        cli_name = {"lvc": "taypo-1"}.get(e, e)
        for p in (from_arrays, from_file):
            assert_bit_equal(p.estimate(e, truncation=0.7), report["estimates"][cli_name])
    assert_bit_equal(from_arrays.exact(), report["exact"])


def test_round_trip_through_json(raw):
    p = metagrad.TabularProblem(**arrays(raw))
    q = metagrad.TabularProblem.from_json(p.to_json())
    assert_bit_equal(p.estimate("taypo-2"), {k: np.asarray(v) for k, v in q.estimate("taypo-2").items()})
    assert (p.n_states, p.n_actions, p.n_trajectories) == (20, 5, 40)


def test_hvp_is_the_hessian_times_v_without_forming_it(raw):
    p = metagrad.TabularProblem(**arrays(raw))
    rng = np.random.default_rng(1)
    for e in ["is", "dr", "taypo-2", "taypo-3", "dr-trunc"]:
        h = p.estimate(e)["hessian"]
        v = rng.normal(size=h.shape[0])
        np.testing.assert_allclose(p.hvp(e, v), h @ v, rtol=1e-10, atol=1e-12)
        # A |X|×|A| direction gives a |X|×|A| product.
        assert p.hvp(e, v.reshape(20, 5)).shape == (20, 5)


def test_gradient_only_skips_the_hessian(raw):
    p = metagrad.TabularProblem(**arrays(raw))
    d = p.estimate("dr", hessian=False)
    assert d["hessian"] is None
    assert np.array_equal(d["gradient"], p.estimate("dr")["gradient"])


def test_finite_horizon_value_tends_to_the_exact_value(raw):
    p = metagrad.TabularProblem(**arrays(raw))
    exact = p.exact()
    long = p.finite_horizon(150, bootstrap=False)
    assert abs(long["value"] - exact["value"]) < 1e-10
    np.testing.assert_allclose(long["gradient"], exact["gradient"], atol=1e-10)
    short = p.finite_horizon(3)
    assert abs(short["value"] - exact["value"]) > 1e-6


def test_lossless_dtypes_are_converted(raw):
    kw = arrays(raw)
    ref = metagrad.TabularProblem(**kw).estimate("dr")
    kw32 = dict(kw, states=kw["states"].astype(np.int32), actions=kw["actions"].astype(np.float64),
                lengths=np.array(kw["lengths"], dtype=np.uint8), theta=kw["theta"].tolist())
    assert_bit_equal(metagrad.TabularProblem(**kw32).estimate("dr"), {k: np.asarray(v) for k, v in ref.items()})


@pytest.mark.parametrize(
    "change, exc, words",
    [
        (lambda kw: kw.update(actions=kw["actions"] + 0.5), ValueError, ["actions", "expected an integer", "0.5"]),
        (lambda kw: kw.update(states=kw["states"].astype(bool)), TypeError, ["states", "bool"]),
        (lambda kw: kw.update(theta=kw["theta"].astype(complex)), TypeError, ["theta", "complex"]),
        (lambda kw: kw.update(rewards=kw["rewards"][:, :3]), ValueError, ["rewards[0]", "expected 5", "got 3"]),
        (lambda kw: kw.update(transitions=kw["transitions"][0]), ValueError, ["transitions", "3-D"]),
        (lambda kw: kw.update(states=kw["states"][:, :-1]), ValueError, ["states", "one more column"]),
        (lambda kw: kw.update(lengths=[99] * 40), ValueError, ["lengths[0]", "99"]),
        (lambda kw: kw["behaviour"].__setitem__((2, 1), 0.9), ValueError, ["behaviour[2]", "sum"]),
        (lambda kw: kw["trajectory_rewards"].__setitem__((1, 2), np.inf), ValueError, ["trajectories[1].rewards[2]", "inf"]),
        (lambda kw: kw["state_values"].__setitem__(4, np.nan), ValueError, ["critic.state_values[4]", "NaN"]),
        (lambda kw: kw["actions"].__setitem__((1, 0), 9), ValueError, ["trajectories[1].actions[0]", "9"]),
        (lambda kw: kw.update(gamma=1.0), ValueError, ["gamma", "1"]),
        (lambda kw: kw.update(start_state=-1), ValueError, ["start_state", "-1"]),
        (lambda kw: kw.update(start_state=1.5), TypeError, ["start_state", "expected an integer", "1.5"]),
        (lambda kw: kw.update(gamma="0.9"), TypeError, ["gamma", "real number", "'0.9'"]),
    ],
)
def test_bad_input_names_the_argument_and_the_value(raw, change, exc, words):
    kw = arrays(raw)
    kw = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    change(kw)
    with pytest.raises(exc) as info:
        metagrad.TabularProblem(**kw)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_bad_estimator_settings_are_refused(raw):
    p = metagrad.TabularProblem(**arrays(raw))
    for name, words in [("taypo-0", ["K must be ≥ 1"]), ("vtrace", ["unknown estimator", "vtrace"]), ("is,dr", ["one name"])]:
        with pytest.raises(ValueError) as info:
            p.estimate(name)
        assert all(w in str(info.value) for w in words), str(info.value)
    with pytest.raises(ValueError, match="truncation"):
        p.estimate("dr-trunc", truncation=-1.0)
    with pytest.raises(ValueError, match=r"v: expected 100 entries"):
        p.hvp("dr", np.ones(7))
    with pytest.raises(ValueError, match="invalid horizon: must be at least 0, got -1"):
        p.finite_horizon(-1)
    with pytest.raises(TypeError, match="invalid horizon: expected an integer, got 2.5"):
        p.finite_horizon(2.5)
    no_critic = arrays(raw)
    del no_critic["state_values"]
    q = metagrad.TabularProblem(**no_critic)
    q.estimate("is")
    with pytest.raises(ValueError, match="needs a critic"):
        q.estimate("dr")


def test_version():
    assert metagrad.__version__ == "0.2.0"
