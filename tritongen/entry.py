"""The `tritongen` console script: the CLI, with a Ctrl-C during start-up (importing the commands) ending quietly."""

from __future__ import annotations

import sys


def run() -> None:
    try:
        from tritongen.cli import main
    except KeyboardInterrupt:  # before any command could install its handlers: same line and code as theirs
        sys.stderr.write("error: interrupted\n")
        sys.exit(130)
    main()
