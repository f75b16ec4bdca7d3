"""Shared fixtures: the command-line binary (to check that both faces give the same
numbers) and small problems."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def cli():
    """Runs the `metagrad` binary (target/release/metagrad, built by scripts/test.sh, or
    $METAGRAD_BIN); returns a function of the arguments giving the completed process."""
    binary = pathlib.Path(os.environ.get("METAGRAD_BIN", REPO / "target" / "release" / "metagrad"))
    if not binary.exists():
        pytest.fail(f"{binary} not found: build it with `cargo build --release` (scripts/test.sh does)")

    def run(*args, check=True, env=None):
        p = subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, env=env)
        if check and p.returncode != 0:
            raise AssertionError(f"metagrad {' '.join(map(str, args))} failed: {p.stderr}")
        return p

    return run


@pytest.fixture(scope="session")
def python_child():
    """Starts `python -c script` (stdout piped, text) that Ctrl-C interrupts as an
    interactive Python would: the child installs Python's KeyboardInterrupt handler first,
    since a test runner started as a shell's background job inherits SIGINT ignored (and
    Python then installs none). Done in the child's code, not with `preexec_fn`, which is
    unsafe to fork with from this multithreaded process."""

    def start(script: str) -> subprocess.Popen:
        restore = "import signal\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
        return subprocess.Popen([sys.executable, "-c", restore + script], stdout=subprocess.PIPE, text=True)

    return start


@pytest.fixture
def interrupted(python_child):
    """Runs `script` in a child Python (:func:`python_child`), waits until `ready(p)` holds
    (polled, at most 60 s), lets it run `settle` seconds more and presses Ctrl-C (SIGINT);
    returns (exit code, the rest of its stdout, seconds from the signal to its exit)."""

    def run(script: str, ready, settle: float):
        p = python_child(script)
        deadline = time.monotonic() + 60
        while not ready(p):
            assert time.monotonic() < deadline, "the child was not ready within 60 s"
            time.sleep(0.1)
        time.sleep(settle)
        sent = time.monotonic()
        p.send_signal(signal.SIGINT)
        code = p.wait(timeout=60)
        elapsed = time.monotonic() - sent
        return code, p.stdout.read().strip(), elapsed

    return run


@pytest.fixture(scope="session")
def example_problem(cli, tmp_path_factory):
    """A random problem file from `metagrad example-problem` (state-value critic)."""
    path = tmp_path_factory.mktemp("problem") / "problem.json"
    cli("example-problem", "--eps", "0.5", "--n", "40", "--seed", "3", "--output", path)
    return path


def pytest_sessionfinish(session, exitstatus):
    """With METAGRAD_NO_SKIPS set (scripts/test.sh sets it), a skipped test or module (e.g.
    `importorskip` of JAX or Ray, which the test environment always installs) fails the run
    instead of passing silently."""
    if not os.environ.get("METAGRAD_NO_SKIPS"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped:
        for r in skipped:
            print(f"\nskipped (not allowed with METAGRAD_NO_SKIPS): {r.nodeid}: {r.longrepr}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
