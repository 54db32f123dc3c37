"""Getting started: init writes an example billing.toml."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import click

from .app import cli, pass_state
from .output import created


def example_config() -> str:
    return resources.files("usagebill").joinpath("example.toml").read_text(encoding="utf-8")


@cli.command("init")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@pass_state
def init(state, force: bool) -> None:
    """Write an example billing.toml (the plans of the docs) to start from.

    \b
    Example:
      usagebill init && usagebill config check
    """
    path: Path = state.config_path
    if path.exists() and not force:
        raise click.ClickException(f"{path} exists; use --force to overwrite it")
    path.write_text(example_config(), encoding="utf-8")
    created(str(path), f"Wrote {path}: edit the plans, then run: usagebill config check")
