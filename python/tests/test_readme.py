"""The README is the project's front door: it stays short, its links resolve, and every
`sh` and `python` code block runs as written, in order, in one fresh folder, within 60 s
each (the command line from target/release or $METAGRAD_BIN on the PATH, Python from this
interpreter). A block preceded by `<!-- readme-test: skip (reason) -->` is not run; only
the install, quick-start and cluster blocks may be (they build the tool, run the whole
suite, or need a Ray cluster)."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
README = REPO / "README.md"
TIMEOUT_S = 60
MAX_LINES = 250
MAX_SKIPS = 3

_FENCE = re.compile(r"^```(\w*)\s*$")
_SKIP = re.compile(r"^<!--\s*readme-test:\s*skip\b.*-->\s*$")


def _blocks():
    """(language, first line number, code, skipped) of every fenced block."""
    lines = README.read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        lang, start = m.group(1), i
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        prev = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        out.append((lang, start + 1, "\n".join(lines[start + 1 : j]), bool(_SKIP.match(prev))))
        i = j + 1
    return out


RUNNABLE = [b for b in _blocks() if b[0] in ("sh", "bash", "python")]


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"README.md has {n} lines (at most {MAX_LINES}); move material to docs/"


def test_readme_skips_only_install_quick_start_and_cluster():
    skipped = [line for _, line, _, skip in RUNNABLE if skip]
    assert len(skipped) <= MAX_SKIPS, f"blocks marked readme-test: skip at lines {skipped}"


def test_readme_links_resolve():
    text = README.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if re.match(r"^[a-z]+://", target):
            continue
        assert (REPO / target).exists(), f"README.md links to {target}, which does not exist"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, cli):
    """One folder for all blocks (later blocks read what earlier ones wrote), with the
    `metagrad` binary of the `cli` fixture on the PATH."""
    binary = pathlib.Path(os.environ.get("METAGRAD_BIN", REPO / "target" / "release" / "metagrad"))
    bindir = tmp_path_factory.mktemp("bin")
    (bindir / "metagrad").symlink_to(binary.resolve())
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}", MPLBACKEND="Agg")
    return tmp_path_factory.mktemp("readme"), env


@pytest.mark.parametrize(
    "lang,line,code,skip", RUNNABLE, ids=[f"line{line}-{lang}" for lang, line, _, _ in RUNNABLE]
)
def test_readme_block_runs(workdir, lang, line, code, skip):
    if skip:
        return  # install / quick-start commands, marked in the README
    cwd, env = workdir
    cmd = ["bash", "-euo", "pipefail", "-c", code] if lang in ("sh", "bash") else [sys.executable, "-c", code]
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"README.md block at line {line} took more than {TIMEOUT_S} s")
    assert p.returncode == 0, f"README.md block at line {line} failed:\n{p.stdout}\n{p.stderr}"
