"""The `tritongen` command line: click commands only, each a thin call into the library."""

from __future__ import annotations

import click

from tritongen import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tritongen")
def main() -> None:
    """Turn a PyTorch checkpoint into a verified Triton Inference Server deployment."""


def _register() -> None:
    # Each command lives in its own module; importing it here adds it to the group.
    from tritongen.cli import (
        bench,  # noqa: F401
        build,  # noqa: F401
        deploy,  # noqa: F401
        image,  # noqa: F401
        plan,  # noqa: F401
        rollout,  # noqa: F401
        serve,  # noqa: F401
        tune,  # noqa: F401
        validate,  # noqa: F401
    )


_register()
