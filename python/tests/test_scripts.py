"""The plotting script of the ProMP breakdown page (scripts/promp-diagnostics.py): it draws
the committed runs, and bad input (unknown panels, missing folders or columns, cells that
are not numbers, an empty iteration range, a missing output folder) is an error naming it,
before anything is drawn."""

import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "promp-diagnostics.py"
# A run with the diagnostics columns (ProMP, 3 inner steps, forked at iteration 250 in the
# breakdown study).
RUN = REPO / "runs" / "promp_breakdown" / "fork250" / "control" / "seed5"
# A run from before the diagnostics columns (return and ratio only).
OLD_RUN = REPO / "runs" / "fig1d" / "promp" / "seed1"


def plot(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def test_draws_every_panel_of_a_committed_run(tmp_path):
    out = tmp_path / "diag.png"
    p = plot(out, f"{RUN}=seed 5", OLD_RUN, "--from", 250, "--to", 300, "--panels", "return,ratio")
    assert p.returncode == 0, p.stderr
    p = plot(out, f"{RUN}=seed 5", "--from", 250, "--to", 300)
    assert p.returncode == 0, p.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 10_000


def test_old_runs_draw_the_panels_they_have(tmp_path):
    out = tmp_path / "old.png"
    p = plot(out, OLD_RUN, "--panels", "return,ratio")
    assert p.returncode == 0, p.stderr
    assert out.exists()


def write_run(folder, text):
    folder.mkdir()
    (folder / "progress.csv").write_text(text)
    return folder


@pytest.mark.parametrize(
    "args, message",
    [
        (["--panels", "return,gains"], "unknown panel(s) ['gains']; choose from return, ratio"),
        (["--panels", ","], "unknown panel(s) ','"),
        (["--panels", "gain"], "panel gain needs column adaptation_gain, which this run lacks"),
        (["--panels", "return", "--from", "600"], "--from 600 --to 1000000000: no run has an iteration in that range"),
    ],
)
def test_bad_options_are_errors_naming_them(tmp_path, args, message):
    p = plot(tmp_path / "x.png", OLD_RUN, *args)
    assert p.returncode == 2
    assert message in p.stderr
    assert not (tmp_path / "x.png").exists()


def test_bad_runs_are_errors_naming_the_file(tmp_path):
    missing = tmp_path / "nothing"
    p = plot(tmp_path / "x.png", missing)
    assert p.returncode == 2 and f"{missing}/progress.csv: cannot read it" in p.stderr

    empty = write_run(tmp_path / "empty", "iteration,pre_return,post_return_1\n")
    p = plot(tmp_path / "x.png", empty)
    assert p.returncode == 2 and "progress.csv: no iterations in it" in p.stderr

    other = write_run(tmp_path / "other", "step,loss\n0,1.0\n")
    p = plot(tmp_path / "x.png", other)
    assert p.returncode == 2 and "no iteration / post_return_K columns" in p.stderr

    bad = write_run(tmp_path / "bad", "iteration,post_return_1,max_inner_ratio_dev\n0,1.5,2\n1,abc,3\n")
    p = plot(tmp_path / "x.png", bad, "--panels", "return,ratio")
    assert p.returncode == 2 and "line 3: column post_return_1 = 'abc' is not a number" in p.stderr


def test_a_missing_output_folder_is_an_error(tmp_path):
    p = plot(tmp_path / "no" / "x.png", OLD_RUN, "--panels", "return")
    assert p.returncode == 2 and "the folder" in p.stderr and "does not exist" in p.stderr
