#!/usr/bin/env bash
# The documentation site (mkdocs.yml, docs/): installs the pinned tools into .deps/docs-venv
# (idempotent; PyPI only) and builds the site with warnings as errors into target/site.
# The Python API pages are read from python/metagrad statically (no build of the extension).
#
#   scripts/docs.sh            # strict build into target/site (what CI runs)
#   scripts/docs.sh serve      # serve on http://127.0.0.1:8000 while editing
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.deps/docs-venv"
pins=(mkdocs==1.6.1 mkdocs-material==9.8.2 mkdocstrings==1.0.8 mkdocstrings-python==2.0.11
      griffelib==2.4.1 mkdocs-autorefs==1.4.5 pymdown-extensions==13.1.2 Markdown==3.11.4 Pygments==2.21.0)
stamp="$venv/.metagrad-docs-tools-$(echo "${pins[*]}" | md5sum | cut -c1-12)"
if [[ ! -f "$stamp" ]]; then
    python="${PYTHON:-python3}"
    [[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
    echo "docs: pip install ${pins[*]}"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: "${pins[@]}"
    touch "$stamp"
fi
cd "$repo"
if [[ "${1:-}" == "serve" ]]; then
    NO_MKDOCS_2_WARNING=1 exec "$venv/bin/mkdocs" serve --strict --dev-addr 127.0.0.1:8000
fi
# (NO_MKDOCS_2_WARNING: the theme's end-of-life banner, not a warning about this site.)
NO_MKDOCS_2_WARNING=1 "$venv/bin/mkdocs" build --strict --clean --site-dir target/site
echo "docs: built target/site/index.html"
