"""The ``metagrad`` command of the Python package: the command-line tool of the Rust crate,
run inside the extension module (the same code as the ``metagrad`` binary that ``cargo
install --path .`` builds; ``metagrad --help`` lists the subcommands)."""

from __future__ import annotations

import signal
import sys


def main() -> int:
    """Runs ``metagrad`` with this process's arguments and returns its exit code."""
    # Ctrl-C stops the process at once, as it stops the binary (Python's handler would wait
    # for the Rust code to return).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    from ._metagrad import cli_main

    return cli_main(sys.argv)


if __name__ == "__main__":
    sys.exit(main())
