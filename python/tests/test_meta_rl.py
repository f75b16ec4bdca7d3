"""metagrad.meta_rl: the command line's runs and grids from Python — same settings, same
files and numbers for the same seed, resumable, stoppable."""

import textwrap

import pandas as pd
import pytest

from metagrad import meta_rl

TINY = dict(tasks=3, rollouts=2, horizon=12, hidden=[8, 8])


def numbers(path):
    """progress.csv without the wall-clock column."""
    return pd.read_csv(path, float_precision="round_trip").drop(columns=["wall_s"])


@pytest.mark.parametrize("algo", ["promp-taypo2", "trpo-maml"])
def test_a_run_equals_the_cli_run(cli, tmp_path, algo):
    hist = meta_rl.train(algo=algo, iterations=3, seed=5, out=tmp_path / "py", verbose=False, **TINY)
    cli("meta-rl", "--algo", algo, "--iterations", 3, "--seed", 5, "--tasks", 3, "--rollouts", 2,
        "--horizon", 12, "--hidden", "8,8", "--out", tmp_path / "cli")
    pd.testing.assert_frame_equal(numbers(tmp_path / "py" / "progress.csv"), numbers(tmp_path / "cli" / "progress.csv"),
                                  check_exact=True)
    pd.testing.assert_frame_equal(hist.drop(columns=["wall_s"]), numbers(tmp_path / "cli" / "progress.csv"),
                                  check_exact=True, check_dtype=False)
    steps = ["outer_loss_1", "outer_loss_2", "outer_loss_3", "outer_loss_4", "outer_loss_5"] if algo.startswith("promp") else []
    promp = (["inner_kl_1", "inner_kl_2", "inner_kl_3", "max_inner_ratio_dev_1", "max_inner_ratio_dev_2",
              "max_inner_ratio_dev_3", "clip_fraction", "outer_step_norm", "outer_step_max", "adaptation_gain"]
             if algo.startswith("promp") else [])
    assert list(hist.columns) == ["iteration", "pre_return", "post_return_1", "post_return_2", "post_return_3",
                                  "env_steps", "wall_s", "outer_diag", "inner_step_norm_mean",
                                  "inner_step_norm_max", "max_inner_ratio_dev"] + steps + ["log_std",
                                  "adapted_log_std_min"] + promp
    assert (hist["inner_step_norm_max"] >= hist["inner_step_norm_mean"]).all()
    assert (hist["inner_step_norm_mean"] > 0).all()
    if algo.startswith("promp"):
        # The first Adam step is at θ_old, later ones move the inner ratios away from 1.
        assert (hist["max_inner_ratio_dev"] > 0).all()
        assert (hist["outer_loss_5"] == hist["outer_diag"]).all()
    for f in ["config.json", "checkpoint.json", "learning_curve.png", "learning_curve.svg"]:
        assert (tmp_path / "py" / f).exists()


def test_resume_continues_bit_identically(tmp_path):
    full = meta_rl.train(algo="promp", iterations=4, seed=2, out=tmp_path / "a", verbose=False, **TINY)
    meta_rl.train(algo="promp", iterations=2, seed=2, out=tmp_path / "b", verbose=False, **TINY)
    with pytest.raises(ValueError, match="holds a run already"):
        meta_rl.train(algo="promp", iterations=4, seed=2, out=tmp_path / "b", verbose=False, **TINY)
    with pytest.raises(ValueError, match="settings differ"):
        meta_rl.train(algo="promp", iterations=4, seed=3, out=tmp_path / "b", resume=True, verbose=False, **TINY)
    resumed = meta_rl.train(algo="promp", iterations=4, seed=2, out=tmp_path / "b", resume=True, verbose=False, **TINY)
    pd.testing.assert_frame_equal(full.drop(columns=["wall_s"]), resumed.drop(columns=["wall_s"]), check_exact=True)
    with pytest.raises(ValueError, match="no checkpoint"):
        meta_rl.train(algo="promp", iterations=4, out=tmp_path / "c", resume=True, verbose=False, **TINY)


def test_compare_writes_the_cli_summary(cli, tmp_path):
    # Two runs at a time here, three on the command line: the same numbers.
    summary = meta_rl.compare(algos=["promp", "trpo-fmaml"], seeds=[1, 2], iterations=2, at=[1], out=tmp_path / "py",
                              verbose=False, jobs=2, **TINY)
    cli("meta-rl", "compare", "--algos", "promp,trpo-fmaml", "--seeds", "1,2", "--iterations", 2, "--at", 1,
        "--tasks", 3, "--rollouts", 2, "--horizon", 12, "--hidden", "8,8", "--jobs", 3, "--out", tmp_path / "cli")
    ours = pd.read_csv(tmp_path / "py" / "summary.csv", float_precision="round_trip")
    theirs = pd.read_csv(tmp_path / "cli" / "summary.csv", float_precision="round_trip")
    cols = [c for c in ours.columns if c != "wall_s_mean"]
    pd.testing.assert_frame_equal(ours[cols], theirs[cols], check_exact=True)
    paired = [pd.read_csv(tmp_path / d / "paired.csv", float_precision="round_trip") for d in ("py", "cli")]
    pd.testing.assert_frame_equal(*paired, check_exact=True)
    # 2 ordered pairs of algorithms × 2 seeds.
    assert len(paired[0]) == 4 and set(paired[0]["against"]) == {"promp", "trpo-fmaml"}
    assert list(summary["algo"]) == ["promp", "promp", "trpo-fmaml", "trpo-fmaml"]
    assert (tmp_path / "py" / "fig1d.png").exists() and (tmp_path / "py" / "summary.md").exists()
    again = meta_rl.summarise(algos="promp,trpo-fmaml", seeds=[1, 2], iterations=2, at=[1], out=tmp_path / "py", **TINY)
    pd.testing.assert_frame_equal(again, summary, check_exact=True)
    # Every run in one long frame, in the grid's order, each run's rows its progress.csv.
    grid = meta_rl.load_grid(tmp_path / "py")
    assert list(grid.drop_duplicates(["algo", "seed"])[["algo", "seed"]].itertuples(index=False, name=None)) == [
        ("promp", 1), ("promp", 2), ("trpo-fmaml", 1), ("trpo-fmaml", 2)]
    one = grid[(grid.algo == "trpo-fmaml") & (grid.seed == 2)].drop(columns=["algo", "seed"]).reset_index(drop=True)
    own = meta_rl.load_progress(tmp_path / "py" / "trpo-fmaml" / "seed2")
    pd.testing.assert_frame_equal(one[own.columns], own, check_exact=True, check_dtype=False)
    assert grid[grid.algo == "trpo-fmaml"].outer_loss_1.isna().all() and grid[grid.algo == "promp"].outer_loss_1.notna().all()
    (tmp_path / "py" / "config.json").unlink()  # without the grid's record: the folders, sorted
    pd.testing.assert_frame_equal(meta_rl.load_grid(tmp_path / "py"), grid, check_exact=True)
    with pytest.raises(ValueError, match="holds no runs"):
        meta_rl.load_grid(tmp_path)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(algo="maml++"), ["unknown algorithm", "maml++"]),
        (dict(tasks=0), ["tasks", "0"]),
        (dict(inner_lr=-0.1), ["inner-lr", "-0.1"]),
        (dict(innerlr=0.1), ["innerlr", "unknown field"]),
        (dict(env="moon-lander"), ["env", "moon-lander"]),
        (dict(precision="f16"), ["precision", "f16"]),
    ],
)
def test_bad_settings_name_the_field_and_value(tmp_path, kwargs, words):
    with pytest.raises(ValueError) as info:
        meta_rl.train(**{"iterations": 1, "out": tmp_path / "x", "verbose": False, **TINY, **kwargs})
    for w in words:
        assert w in str(info.value), (w, str(info.value))


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda out: meta_rl.train(seed=-1, out=out), ValueError, ["invalid seed", "at least 0", "-1"]),
        (lambda out: meta_rl.train(seed=1.5, out=out), TypeError, ["invalid seed", "expected an integer", "1.5"]),
        (lambda out: meta_rl.train(seed=2**64, out=out), ValueError, ["invalid seed", "2**64 - 1", str(2**64)]),
        (lambda out: meta_rl.train(iterations="3", out=out), TypeError, ["invalid iterations", "'3'"]),
        (lambda out: meta_rl.train(threads=-2, out=out), ValueError, ["invalid threads", "at least 1", "-2"]),
        (lambda out: meta_rl.params(seed=2.0), TypeError, ["invalid seed", "2.0"]),
        (lambda out: meta_rl.compare(seeds=[1, -3], out=out), ValueError, ["invalid seeds[1]", "-3"]),
        (lambda out: meta_rl.compare(seeds=[1.5], out=out), TypeError, ["invalid seeds[0]", "1.5"]),
        (lambda out: meta_rl.compare(seeds="1,2", out=out), TypeError, ["invalid seeds", "'1,2'"]),
        (lambda out: meta_rl.compare(at=[-1], out=out), ValueError, ["invalid at[0]", "-1"]),
        (lambda out: meta_rl.compare(jobs=0, out=out), ValueError, ["invalid jobs", "at least 1", "0"]),
        (lambda out: meta_rl.grid_runs(seeds=None, out=out), TypeError, ["invalid seeds", "None"]),
    ],
)
def test_integer_arguments_are_integers_in_range(tmp_path, call, exc, words):
    """Seeds, counts and iteration numbers: never rounded (1.5 is refused, not run as 1),
    never an unnamed OverflowError."""
    with pytest.raises(exc) as info:
        call(tmp_path / "x")
    for w in words:
        assert w in str(info.value), (w, str(info.value))
    assert not (tmp_path / "x").exists()


def test_grid_refuses_duplicates(tmp_path):
    with pytest.raises(ValueError, match="seed 1 is listed twice"):
        meta_rl.compare(seeds=[1, 1], iterations=1, out=tmp_path, verbose=False, **TINY)
    with pytest.raises(ValueError, match="invalid at: 0"):
        meta_rl.compare(seeds=[1], at=[0], iterations=1, out=tmp_path, verbose=False, **TINY)


def test_defaults_and_params():
    d = meta_rl.defaults()
    assert (d["tasks"], d["rollouts"], d["horizon"], d["hidden"], d["precision"]) == (40, 20, 100, [64, 64], "f32")
    p = meta_rl.params(algo="trpo-dice", seed=4, env="point-corners")
    assert p["inner_steps"] == 3 and p["algo"] == "trpo-dice" and p["seed"] == 4
    # The docstring names every setting.
    for name in d:
        assert f"``{name}``" in meta_rl.defaults.__doc__, name
    # The ProMP-TayPO-2 variants: recorded for promp-taypo2, checked, ignored by the others.
    v = meta_rl.params(algo="promp-taypo2", taypo2_pairs="normalised", taypo2_ratio_clip=0.3)
    assert (v["taypo2_pairs"], v["taypo2_ratio_clip"]) == ("normalised", 0.3)
    assert "taypo2_pairs" not in meta_rl.params(algo="promp", taypo2_pairs="normalised")
    with pytest.raises(ValueError, match="taypo2-ratio-clip"):
        meta_rl.params(algo="promp-taypo2", taypo2_ratio_clip=-1.0)
    # ∞ where it means "none": no pair clip beside a first-order clip, no loss guard.
    inf = float("inf")
    v = meta_rl.params(algo="promp-taypo2", taypo2_ratio_clip=0.3, taypo2_pair_clip=inf, divergence_threshold=inf)
    assert (v["taypo2_ratio_clip"], v["taypo2_pair_clip"], v["divergence_threshold"]) == (0.3, inf, inf)
    assert meta_rl.params(algo="promp", taypo2_pair_clip=0.3).get("taypo2_pair_clip") is None
    with pytest.raises(ValueError, match="taypo2-pair-clip"):
        meta_rl.params(algo="promp-taypo2", taypo2_pair_clip=0.0)
    with pytest.raises(ValueError, match=r"invalid max_kl: must be finite, got inf \(∞ is allowed only for"):
        meta_rl.params(max_kl=inf)
    # ProMP's settings from its code: recorded only when not the default, and only for ProMP.
    assert meta_rl.params(algo="promp", inner_kl_average="mean")["inner_kl_average"] == "mean"
    assert "inner_kl_average" not in meta_rl.params(algo="promp")
    assert "inner_kl_average" not in meta_rl.params(algo="trpo-maml", inner_kl_average="mean")
    assert meta_rl.params(algo="trpo-tmaml")["dice_critic"] == "time"
    # The ratio guard: recorded for the ProMP algorithms only, checked.
    assert meta_rl.params(algo="promp", ratio_guard=1000.0)["ratio_guard"] == 1000.0
    assert "ratio_guard" not in meta_rl.params(algo="trpo-maml", ratio_guard=1000.0)
    assert "ratio_guard" not in meta_rl.params(algo="promp")
    with pytest.raises(ValueError, match="ratio-guard"):
        meta_rl.params(algo="promp", ratio_guard=0.0)


def test_ctrl_c_keeps_the_last_checkpoint(tmp_path, interrupted):
    out = tmp_path / "run"
    script = textwrap.dedent(
        f"""
        import sys
        from metagrad import meta_rl
        try:
            meta_rl.train(algo="trpo-maml", iterations=1000, seed=1, out={str(out)!r}, verbose=False,
                          tasks=20, rollouts=10, horizon=100)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(42)
        """
    )
    # Once the first iteration's checkpoint is on disk, interrupt mid-iteration.
    code, said, elapsed = interrupted(script, lambda p: (out / "checkpoint.json").exists(), settle=0.7)
    assert code == 42 and said == "interrupted"
    assert elapsed < 1.0, f"took {elapsed:.2f} s to stop"
    done = len(pd.read_csv(out / "progress.csv"))
    resumed = meta_rl.train(algo="trpo-maml", iterations=done + 1, seed=1, out=out, resume=True, verbose=False,
                            tasks=20, rollouts=10, horizon=100)
    assert len(resumed) == done + 1


def test_resume_if_present_threads_and_grid_runs(tmp_path):
    """What a scheduler needs (metagrad.ray): a run that starts or continues, on a given
    number of threads (results do not depend on it), and the grid's runs and folders."""
    full = meta_rl.train(algo="promp", iterations=3, seed=2, out=tmp_path / "a", verbose=False, **TINY)
    part = meta_rl.train(algo="promp", iterations=2, seed=2, out=tmp_path / "b", resume="if-present", threads=1,
                         verbose=False, **TINY)
    assert len(part) == 2
    more = meta_rl.train(algo="promp", iterations=3, seed=2, out=tmp_path / "b", resume="if-present", threads=2,
                         verbose=False, **TINY)
    pd.testing.assert_frame_equal(full.drop(columns=["wall_s"]), more.drop(columns=["wall_s"]), check_exact=True)
    with pytest.raises(ValueError, match="invalid resume"):
        meta_rl.train(algo="promp", iterations=1, out=tmp_path / "c", resume="maybe", verbose=False, **TINY)
    with pytest.raises(ValueError, match="invalid threads"):
        meta_rl.train(algo="promp", iterations=1, out=tmp_path / "c", threads=0, verbose=False, **TINY)
    runs = meta_rl.grid_runs(algos="promp,trpo-maml", seeds=[1, 2], iterations=2, out=tmp_path / "g", **TINY)
    assert [(r["algo"], r["seed"]) for r in runs] == [("promp", 1), ("promp", 2), ("trpo-maml", 1), ("trpo-maml", 2)]
    assert runs[1]["out"] == str(tmp_path / "g" / "promp" / "seed2")
    with pytest.raises(ValueError, match="tasks"):
        meta_rl.grid_runs(algos="promp", seeds=[1], iterations=2, out=tmp_path / "g", **dict(TINY, tasks=0))


def test_python_defaults_are_the_librarys():
    """The settings Python leaves out take the library's defaults (one source with the
    command line): a run's recorded settings without env or iterations are the defaults'."""
    import inspect

    d = meta_rl.defaults()
    p = meta_rl.params()
    assert (p["env"], p["iterations"]) == (d["env"], d["iterations"])
    for f in (meta_rl.train, meta_rl.compare, meta_rl.summarise, meta_rl.grid_runs, meta_rl.params):
        sig = inspect.signature(f).parameters
        assert sig["env"].default is None, f
        assert "iterations" not in sig or sig["iterations"].default is None, f
