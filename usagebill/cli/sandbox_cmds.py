"""sandbox serve: the offline Stripe emulator over HTTP on loopback, shared by processes."""

from __future__ import annotations

from pathlib import Path

import click

from .app import cli, pass_state
from .output import say


@cli.group("sandbox")
def sandbox_group() -> None:
    """The built-in offline Stripe emulator.

    \b
    Example:
      usagebill sandbox serve --port 12111
    """


@sandbox_group.command("serve")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="0 picks a free port.")
@click.option("--state", "state_file", type=click.Path(dir_okay=False),
              help="The sandbox's SQLite state [default: --sandbox-db, else sandbox.db beside the ledger, or "
                   "beside the config when the ledger is a PostgreSQL URL].")
@pass_state
def sandbox_serve(state, port: int, state_file: str | None) -> None:
    """Serve the sandbox on 127.0.0.1 until interrupted; prints its base URL on stdout.
    Other processes use it with USAGEBILL_SANDBOX_URL=<url>.

    \b
    Example:
      usagebill sandbox serve --port 12111 &
      USAGEBILL_SANDBOX_URL=http://127.0.0.1:12111 usagebill sync
    """
    from ..locations import sandbox_path_for
    from ..sandbox import UnsupportedSDK, serve

    if state_file is None:
        from ..billing import default_db_path

        db = state.db_path or (default_db_path(state.config) if state.config_path.exists() else ".usagebill/ledger.db")
        state_file = str(state.sandbox_db or sandbox_path_for(db, state.config_path))
    try:
        server = serve(Path(state_file), port=port)
    except OSError as e:
        raise click.ClickException(f"cannot listen on 127.0.0.1:{port}: {e.strerror}") from None
    except UnsupportedSDK as e:
        raise click.ClickException(str(e)) from None
    click.echo(server.url)
    say(f"usagebill: sandbox serving at {server.url}, state in {state_file}; Ctrl-C stops it")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
