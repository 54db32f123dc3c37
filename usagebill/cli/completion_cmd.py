"""completion: shell completion scripts, generated from the Click app."""

from __future__ import annotations

import click

from .app import cli

SHELLS = ("bash", "zsh", "fish")


def completion_script(shell: str) -> str:
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    return cls(cli, {}, "usagebill", "_USAGEBILL_COMPLETE").source()


@cli.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the shell completion script (also checked in under completions/).

    \b
    Example:
      usagebill completion bash > ~/.local/share/bash-completion/completions/usagebill
      usagebill completion zsh > "${fpath[1]}/_usagebill"
      usagebill completion fish > ~/.config/fish/completions/usagebill.fish
    """
    click.echo(completion_script(shell), nl=False)
