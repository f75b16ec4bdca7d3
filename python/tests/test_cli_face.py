"""The package's `metagrad` command (a console script running the command line's Rust code
inside the extension) is the binary's command line: the same version line, the same files
bit for bit, the same errors; `metagrad.CPU_LEVEL` names the level the binary reports, and
`METAGRAD_CPU` forces it in the package as in the binary."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import metagrad

SCRIPTS = pathlib.Path(sys.executable).parent
LEVELS = ("baseline", "avx2", "avx512")


def package_cli(*args, env=None):
    """Runs the `metagrad` console script that this interpreter's environment installed."""
    script = SCRIPTS / "metagrad"
    if not script.exists():
        pytest.fail(f"{script} not found: the package's console script is not installed")
    full = {**os.environ, **(env or {})}
    return subprocess.run([str(script), *map(str, args)], capture_output=True, text=True, env=full)


def without_cpu_env():
    return {k: v for k, v in os.environ.items() if k != "METAGRAD_CPU"}


def test_version_line_is_the_binarys(cli):
    got = package_cli("--version", env=without_cpu_env())
    assert got.returncode == 0, got.stderr
    want = cli("--version").stdout
    assert got.stdout == want
    assert got.stdout.startswith(f"metagrad {metagrad.__version__} (commit ")
    assert got.stdout.rstrip().endswith(f"CPU level {metagrad.CPU_LEVEL})")


def test_the_tabular_study_gives_the_binarys_files(cli, tmp_path):
    args = ["tabular", "--trials", "2", "--n", "40", "--n-grid", "20,40", "--eps", "0,0.5", "--seed", "3"]
    got = package_cli(*args, "--out", tmp_path / "package")
    assert got.returncode == 0, got.stderr
    cli(*args, "--out", tmp_path / "binary")
    for name in ("summary.csv", "trials.csv"):
        assert (tmp_path / "package" / name).read_bytes() == (tmp_path / "binary" / name).read_bytes(), name
    cfg = json.loads((tmp_path / "package" / "config.json").read_text())
    assert cfg["cpu_level"] == metagrad.CPU_LEVEL


def test_errors_are_the_binarys(cli):
    got = package_cli("estimate", "--input", "/nonexistent/problem.json")
    want = cli("estimate", "--input", "/nonexistent/problem.json", check=False)
    assert got.returncode == want.returncode == 2
    assert got.stderr == want.stderr and got.stderr.startswith("error: ")
    # A bad level fails the package's import (see below); the command reports it as the
    # binary does (its error line and exit code, no traceback) and stops before it runs.
    bad = package_cli("tabular", env={"METAGRAD_CPU": "avx9000"})
    want = cli("tabular", check=False, env={**os.environ, "METAGRAD_CPU": "avx9000"})
    assert bad.returncode == want.returncode == 2
    assert bad.stderr == want.stderr
    assert "METAGRAD_CPU=\"avx9000\"" in bad.stderr and "baseline, avx2, avx512" in bad.stderr


def cpu_level_of_a_child(env):
    code = "import metagrad; print(metagrad.CPU_LEVEL)"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip(), p.stderr


@pytest.mark.parametrize("level", LEVELS)
def test_cpu_level_is_forced_and_capped(level):
    detected, _ = cpu_level_of_a_child(without_cpu_env())
    got, stderr = cpu_level_of_a_child({**without_cpu_env(), "METAGRAD_CPU": level})
    assert got == LEVELS[min(LEVELS.index(level), LEVELS.index(detected))]
    assert ("is above this CPU's level" in stderr) == (LEVELS.index(level) > LEVELS.index(detected))


def test_a_bad_cpu_level_fails_the_import_naming_the_valid_ones():
    p = subprocess.run([sys.executable, "-c", "import metagrad"], capture_output=True, text=True,
                       env={**os.environ, "METAGRAD_CPU": "sse9"})
    assert p.returncode != 0
    assert "METAGRAD_CPU=\"sse9\" is not a CPU level" in p.stderr and "baseline, avx2, avx512" in p.stderr


def test_the_command_runs_without_rust_on_the_path(tmp_path):
    """The console script needs only the installed package: with PATH holding this
    environment's scripts and the system's directories (no cargo), it runs a study."""
    path = os.pathsep.join([str(SCRIPTS), "/usr/bin", "/bin"])
    assert shutil.which("cargo", path=path) is None
    got = package_cli("tabular", "--trials", "1", "--n", "20", "--n-grid", "20", "--eps", "0",
                      "--out", tmp_path / "t", env={"PATH": path})
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "t" / "summary.csv").stat().st_size > 0
