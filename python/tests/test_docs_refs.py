"""Every reference from code to the documentation (`docs/<page>.md#<heading>`, e.g. the
formula references to docs/theory.md) names a page that exists and a heading it has, so
that the site's theory page stays the one place a formula is stated."""

import pathlib
import re
import unicodedata

REPO = pathlib.Path(__file__).resolve().parents[2]
SOURCES = ["src", "python/src", "python/metagrad", "python/tests", "python/benches", "tests", "benches", "scripts"]
_REF = re.compile(r"docs/([\w/.-]+\.md)(?:#([\w-]+))?")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*$")
_EXPLICIT = re.compile(r"\{#([\w-]+)\}\s*$")


def _slug(text: str) -> str:
    """Python-Markdown's default heading id."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(page: pathlib.Path) -> set:
    out = set()
    for line in page.read_text(encoding="utf-8").splitlines():
        m = _HEADING.match(line)
        if not m:
            continue
        explicit = _EXPLICIT.search(m.group(1))
        out.add(explicit.group(1) if explicit else _slug(m.group(1)))
    return out


def test_code_references_to_docs_resolve():
    refs = []
    for folder in SOURCES:
        for path in sorted((REPO / folder).rglob("*")):
            if path.suffix not in (".rs", ".py", ".pyi", ".sh", ".md") or ".venv" in path.parts:
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                refs += [(path.relative_to(REPO), n, page, anchor) for page, anchor in _REF.findall(line)]
    assert refs, "no references to docs/ found: the pattern is wrong"
    bad = []
    for where, n, page, anchor in refs:
        target = REPO / "docs" / page
        if not target.exists():
            bad.append(f"{where}:{n}: docs/{page} does not exist")
        elif anchor and anchor not in _anchors(target):
            bad.append(f"{where}:{n}: docs/{page} has no heading #{anchor}")
    assert not bad, "\n".join(bad)


def test_no_references_to_files_outside_the_repository():
    """Formulas and settings are cited from docs/theory.md, never from notes that are not in
    the repository."""
    # (spelled in pieces, so that this file does not match itself)
    outside = re.compile("|".join(["notes" + " §", "[Nn]otes" + "'", r"notes\.md", r"paper\.md", "/work/" + "shared"]))
    bad = []
    for folder in SOURCES + ["docs"]:
        for path in sorted((REPO / folder).rglob("*")):
            if path.suffix not in (".rs", ".py", ".pyi", ".sh", ".md", ".toml") or ".venv" in path.parts:
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if outside.search(line):
                    bad.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    for name in ("README.md", "CHANGELOG.md", "Cargo.toml"):
        for n, line in enumerate((REPO / name).read_text(encoding="utf-8").splitlines(), 1):
            if outside.search(line):
                bad.append(f"{name}:{n}: {line.strip()}")
    assert not bad, "cite docs/theory.md#<heading> instead:\n" + "\n".join(bad)
