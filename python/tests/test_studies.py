"""tabular_study: the command line's study from Python, same seed → same files; settings
checked at the boundary; Ctrl-C stops it."""

import textwrap
import time

import pandas as pd
import pytest

import metagrad

SMALL = dict(sweep="eps", eps=[0.0, 0.5], n=60, trials=3, states=6, actions=3, horizon=8, seed=11)


def test_same_seed_same_files_as_the_cli(cli, tmp_path):
    study = metagrad.tabular_study(out=tmp_path / "py", verbose=False, estimators=["is", "dr", "taypo-2"], **SMALL)
    flags = [f"--{k.replace('_', '-')}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in SMALL.items()]
    cli("tabular", *flags, "--estimators", "is,dr,taypo-2", "--out", tmp_path / "cli")
    for name in ["trials.csv", "summary.csv", "config.json", "fig1a_gradient.svg"]:
        assert (tmp_path / "py" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name
    assert list(study.trials.columns[:5]) == ["sweep", "estimator", "eps", "n", "trial"]
    assert len(study.trials) == 2 * 3 * 3
    cli_summary = pd.read_csv(tmp_path / "cli" / "summary.csv", float_precision="round_trip")
    pd.testing.assert_series_equal(study.summary["hess_mean"], cli_summary["hess_mean"], check_exact=True)


def test_biasvar_sweep_same_as_the_cli(cli, tmp_path):
    small = dict(
        sweep="biasvar", eps=[0.0, 0.5], n_grid=[10, 100], trials=2, states=6, actions=3, horizon=8, seed=3,
        biasvar_trajectories=4000, biasvar_chunk=100,
    )
    study = metagrad.tabular_study(out=tmp_path / "py", verbose=False, estimators=["dr", "taypo-1", "taypo-2"], **small)
    flags = [f"--{k.replace('_', '-')}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in small.items()]
    cli("tabular", *flags, "--estimators", "dr,taypo-1,taypo-2", "--out", tmp_path / "cli")
    for name in ["biasvar.csv", "biasvar_summary.csv", "biasvar_predictions.csv", "biasvar_crossover.csv"]:
        assert (tmp_path / "py" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name
    # 2 trials × 2 ε × 3 estimators × (gradient, Hessian) × (J_T, V).
    bv = study.biasvar
    assert len(bv) == 2 * 2 * 3 * 2 * 2 and len(study.biasvar_summary) == 2 * 3 * 2 * 2
    assert {"bias2", "bias2_se", "bias2_bound", "variance", "mse_n10", "mse_n100", "corr_n100"} <= set(bv.columns)
    assert set(bv["target"]) == {"J_T", "V"} and set(bv["quantity"]) == {"gradient", "hessian"}
    # bias² is only given when detectable; the bound always.
    assert (bv["bias2"].isna() == ~bv["bias_detectable"]).all() and (bv["bias2_bound"] > 0).all()
    # The columns as documented: mse_n10 is the predicted MSE(10) = bias² + σ²/10 (a
    # consistency check of the table; that the decomposition matches measured MSEs is the
    # Rust test `decomposition_adds_up_to_the_measured_mse`).
    assert ((bv["mse_n10"] - (bv["bias2_estimate"] + bv["variance"] / 10)).abs() < 1e-9 * bv["mse_n10"].abs()).all()
    assert set(study.predictions["n"]) == {10, 100} and len(study.crossovers) == 4
    assert set(study.trials["sweep"]) == {"n"}


def test_other_sweeps_have_empty_biasvar_tables():
    study = metagrad.tabular_study(verbose=False, estimators=["dr"], **SMALL)
    assert study.biasvar.empty and study.crossovers.empty and len(study.trials) == 2 * 3


def test_defaults_are_the_cli_defaults():
    d = metagrad.tabular_study_defaults()
    assert d["eps"] == [0.0, 0.2, 0.5, 0.8] and d["n"] == 1000 and d["trials"] == 10
    assert d["estimators"] == "is,dr,dr-trunc,taypo-1,taypo-2"
    assert d["biasvar_trajectories"] == 100000 and d["biasvar_chunk"] == 1000


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        (dict(trails=3), ValueError, ["trails", "unknown field"]),
        (dict(eps=[0.2, 1.5]), ValueError, ["eps", "1.5"]),
        (dict(n=-3), ValueError, ["n", "-3"]),
        (dict(states="many"), ValueError, ["states", "many"]),
        (dict(gamma=float("nan")), ValueError, ["gamma", "nan"]),
        (dict(estimators=["dr", 3]), TypeError, ["estimators"]),
        (dict(sweep="everything"), ValueError, ["sweep", "everything"]),
    ],
)
def test_bad_settings_are_refused_before_any_work(kwargs, exc, words):
    with pytest.raises(exc) as info:
        metagrad.tabular_study(verbose=False, **{**SMALL, **kwargs})
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_a_refused_call_draws_no_progress_bar(capsys):
    with pytest.raises(ValueError, match="n-grid"):
        metagrad.tabular_study(verbose=True, **{**SMALL, "sweep": "n", "n_grid": [0]})
    assert capsys.readouterr().err == ""
    metagrad.tabular_study(verbose=True, **SMALL)  # a call that runs draws one
    assert "tabular study" in capsys.readouterr().err


def test_the_progress_bar_redraws_at_tqdm_s_rate_not_per_update(capsys):
    bar = metagrad._progress._Bar("many updates", "it")
    for i in range(1, 2001):
        bar.update_to(i, 2000)
    bar.close()
    err = capsys.readouterr().err
    assert "2000/2000" in err
    assert err.count("\r") < 100, err.count("\r")  # one redraw per update would be > 2000


def test_ctrl_c_stops_within_a_second(tmp_path, interrupted):
    script = textwrap.dedent(
        """
        import sys, metagrad
        print("started", flush=True)
        try:
            metagrad.tabular_study(verbose=False, n=3000, trials=200, sweep="meta")
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(42)
        """
    )
    code, said, elapsed = interrupted(script, lambda p: p.stdout.readline().strip() == "started", settle=1.5)
    assert code == 42, code
    assert said == "interrupted"
    assert elapsed < 1.0, f"took {elapsed:.2f} s to stop"


def test_concurrent_calls_stop_independently():
    """Each stoppable call has its own stop flag: a call whose progress callback fails stops,
    while another call running at the same time finishes with its full results."""
    import json
    import threading

    from metagrad import _metagrad

    settings = json.dumps({**SMALL, "trials": 30})
    a_done, results = threading.Event(), {}

    def failing():
        def progress(done, total):
            raise RuntimeError("stop this call")

        try:
            _metagrad.tabular_study(settings, None, progress)
            results["a"] = "finished"
        except RuntimeError as e:
            results["a"] = str(e)
        finally:
            a_done.set()

    def running():
        seen = []

        def progress(done, total):
            if not seen:
                a_done.wait(30)  # the other call fails while this one works
            seen.append(done)

        results["b"] = _metagrad.tabular_study(settings, None, progress)
        results["b_seen"] = seen

    threads = [threading.Thread(target=running), threading.Thread(target=failing)]
    threads[0].start()
    time.sleep(0.05)
    threads[1].start()
    for t in threads:
        t.join(60)
    assert results["a"] == "stop this call"
    trials, *_ = results["b"]
    assert len(json.loads(trials)) == 2 * 30 * 5  # every ε × trial × estimator
    assert results["b_seen"][-1] == 2 * 30
