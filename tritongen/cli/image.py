"""`tritongen image build`: argument handling and printing around tritongen.image.build_slim_image."""

from __future__ import annotations

from pathlib import Path

import click

from tritongen.cli import main
from tritongen.cli.common import common_options, emit_json, stderr_console, stdout_console


@main.group("image")
def image_group() -> None:
    """The slim CPU Triton image that serves `--format python` models."""


@image_group.command("build")
@click.option("--base-image", metavar="IMAGE",
              help="Base image with python3 (3.10-3.12), its venv module and the shared libpython "
                   "[default: python:3.11-slim].")
@click.option("--tag", metavar="TAG", help="Tag of the image built [default: tritongen/tritonserver-slim:<triton>].")
@click.option("--deploy", "deploy_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Build from this deploy folder's Dockerfile and requirements (default: tritongen's own).")
@click.option("--python-version", metavar="X.Y", help="Check that the base image has this Python (it is read from it).")
@click.option("--quiet", is_flag=True, help="Do not show pip's and docker build's output.")
@common_options
def image_build_command(base_image: str | None, tag: str | None, deploy_dir: Path | None, python_version: str | None,
                        quiet: bool, as_json: bool) -> None:
    """Download the wheels on this machine and build the slim Triton image with Docker."""
    from tritongen.image import build_slim_image

    err = stderr_console()

    def show(line: str) -> None:
        if not quiet:
            err.print(line, style="dim", markup=False, highlight=False, soft_wrap=True, emoji=False)

    result = build_slim_image(base_image=base_image, tag=tag, deploy_dir=deploy_dir, python_version=python_version,
                              progress=show)
    if as_json:
        emit_json(result.to_dict())
        return
    stdout_console().print(
        f"[bold green]Built[/] {result.tag} ({result.size_bytes / 1e6:.0f} MB, Python {result.base.python_version} "
        f"on {result.base.image}) in {result.seconds:.1f}s", highlight=False)
