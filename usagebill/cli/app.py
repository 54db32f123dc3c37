"""The root command group: global options, lazy Billing, and the translation of domain
errors into one line on stderr and a documented exit code."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

import click

from ..errors import ExitCode, StripeAPIError, UsagebillError
from ..ledger.db import StoreError
from ..textsafe import one_line
from .output import debug, readable_times


class AppError(click.ClickException):
    """A domain error, shown as ``Error: <message>`` with its own exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class State:
    """Per-invocation state: where the config and ledger are, opened on first use."""

    def __init__(self, config: str, db: str | None, live: bool = False, api_key: str | None = None,
                 sandbox_db: str | None = None):
        self.config_path = Path(config)
        self.db_path = db
        self.sandbox_db = sandbox_db
        self.live = live
        self.api_key = api_key
        self._billing = None
        self.adopting = False  # config adopt: open a ledger that belongs to another config

    @property
    def connection(self):
        """The Stripe backend (sandbox unless STRIPE_API_KEY is set): the library's, opened
        on first use (which says once on stderr which one it is)."""
        return self.billing.connection

    @property
    def billing(self):
        if self._billing is None:
            from ..billing import Billing

            self._require_config()
            self._billing = Billing.open(
                self.config_path, self.db_path, api_key=self.api_key or "", live=self.live,
                on_connect=lambda conn: click.echo(f"usagebill: {conn.description}", err=True),
                adopting=self.adopting, sandbox_db=self.sandbox_db,
            )
        return self._billing

    @property
    def config(self):
        if self._billing is not None:
            return self._billing.config
        from ..config import load_config

        self._require_config()
        return load_config(self.config_path)

    def _require_config(self) -> None:
        """pip users have no billing.toml.example: say how to get a config."""
        if not self.config_path.exists():
            from ..errors import ConfigError

            raise ConfigError(
                f"{self.config_path}: no such file; write an example with: usagebill init "
                "(or point --config / USAGEBILL_CONFIG at yours)"
            )

    def close(self) -> None:
        if self._billing is not None:
            self._billing.close()


class Group(click.Group):
    """Lists commands in the order they were added; turns domain errors into exit codes."""

    def list_commands(self, ctx):
        return list(self.commands)

    def parse_args(self, ctx, args):
        for n, arg in enumerate(args, 1):
            try:
                arg.encode("utf-8")
            except UnicodeEncodeError:
                # bytes that are not UTF-8 arrive as lone surrogates: say so before anything
                # tries to print or store them
                raise click.UsageError(f"argument {n} ({one_line(arg, 80)}) is not valid UTF-8", ctx) from None
        return super().parse_args(ctx, args)

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except click.ClickException as e:
            e.message = one_line(e.message)
            raise

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UsagebillError as e:
            if debug():
                raise
            message = readable_times(str(e)) if isinstance(e, StripeAPIError) else str(e)
            raise AppError(one_line(message), int(e.exit_code)) from None
        except (StoreError, sqlite3.Error) as e:
            if debug():
                raise
            raise AppError(
                one_line(f"ledger: {e} (usagebill doctor --offline checks it)"),
                int(ExitCode.ERROR),
            ) from None
        except click.ClickException as e:
            e.message = one_line(e.message)
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(int(ExitCode.INTERRUPTED))


pass_state = click.make_pass_decorator(State)


def _say_overrides(ctx: click.Context) -> None:
    """A flag beats its environment variable, and never silently."""
    import os

    for param in ctx.command.params:
        envvar = getattr(param, "envvar", None)
        if (
            isinstance(envvar, str)
            and os.environ.get(envvar)
            and ctx.get_parameter_source(param.name) == click.core.ParameterSource.COMMANDLINE
        ):
            click.echo(f"usagebill: --{param.name.replace('_', '-')} given, so {envvar} is not used", err=True)


def _set_meta(name: str):
    def callback(ctx: click.Context, param, value) -> None:
        if value:
            ctx.meta[name] = True

    return callback


def json_option(fn):
    """--json, and gh's --plain / --no-header: every command that prints data takes them."""
    fn = click.option("--no-header", is_flag=True, expose_value=False, callback=_set_meta("usagebill.no_header"),
                      help="Plain lines without the header line (implies --plain).")(fn)
    fn = click.option("--plain", is_flag=True, expose_value=False, callback=_set_meta("usagebill.plain"),
                      help="Plain tab-separated lines, as when piped, even on a terminal.")(fn)
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")(fn)


def id_option(fn):
    return click.option(
        "--id",
        "idempotency_key",
        metavar="KEY",
        help="Idempotency key (per customer): repeating the command with it does not repeat the write.",
    )(fn)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config",
    envvar="USAGEBILL_CONFIG",
    default="billing.toml",
    show_default=True,
    show_envvar=True,
    type=click.Path(dir_okay=False),
    help="The billing.toml with plans and features.",
)
@click.option(
    "--db",
    envvar="USAGEBILL_DB",
    show_envvar=True,
    metavar="PATH|URL",
    type=click.Path(dir_okay=False),
    help="The ledger: a SQLite file, or a PostgreSQL URL (postgresql://user@host/db; the password "
    "through PGPASSWORD, PGPASSFILE or PGSERVICE) [default: [ledger] path or url of the config, "
    "else .usagebill/ledger.db beside it].",
)
@click.option(
    "--sandbox-db",
    envvar="USAGEBILL_SANDBOX_DB",
    show_envvar=True,
    metavar="PATH",
    type=click.Path(dir_okay=False),
    help="The built-in sandbox's state [default: sandbox.db beside a SQLite ledger; "
    ".usagebill/sandbox.db beside the config when the ledger is a PostgreSQL URL].",
)
@click.option(
    "--api-key-file",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Read the Stripe secret key from FILE (readable by its owner only) instead of the "
    "STRIPE_API_KEY environment variable. Neither: the built-in sandbox.",
)
@click.option(
    "--live",
    is_flag=True,
    help="Allow a live STRIPE_API_KEY (sk_live_...): real customers, real money. Test clocks refuse it.",
)
@click.version_option(package_name="usagebill", prog_name="usagebill")
@click.pass_context
def cli(ctx: click.Context, config: str, db: str | None, sandbox_db: str | None, api_key_file: str | None,
        live: bool) -> None:
    """Usage-based billing on Stripe: credits, wallets and metered usage, kept in a local
    ledger and delivered to Stripe (or to the built-in offline sandbox).

    \b
    The Stripe key comes from the STRIPE_API_KEY environment variable (or --api-key-file),
    never from the command line, where other users could read it. Without a key every
    command runs against the built-in sandbox, whose state lives beside the ledger.
    The ledger is SQLite by default; --db postgresql://... (or [ledger] url) shares one
    PostgreSQL ledger between the servers of an app.

    \b
    Example:
      usagebill config check
      usagebill customers add alice --email alice@example.com
      usagebill subscribe alice Pro
      usagebill record alice api_calls 150
      usagebill summary alice
    """
    _say_overrides(ctx)
    from ..keyfile import read_key_file

    api_key = os.environ.get("STRIPE_API_KEY")
    if api_key_file:
        if api_key:
            click.echo("usagebill: --api-key-file given, so STRIPE_API_KEY is not used", err=True)
        api_key = read_key_file(api_key_file)
    state = State(config, db, live, api_key, sandbox_db)
    ctx.obj = state
    ctx.call_on_close(state.close)
