"""The root ``sdfarm`` group: builds the Settings once and turns our errors into one line."""

from __future__ import annotations

import click

from sdfarm import __version__
from sdfarm.config import Settings
from sdfarm.db.engine import DatabaseError, disk_fault_of
from sdfarm.errors import SdfarmError, clip_echoes


class SdfarmGroup(click.Group):
    """Every ``SdfarmError`` becomes a one-line ``Error: ...`` with exit status 1, no traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SdfarmError as exc:
            raise click.ClickException(clip_echoes(str(exc))) from None
        except click.UsageError as exc:
            raise _one_line(exc) from None
        except DatabaseError as exc:  # a SQLite file on a full disk is this machine's fault
            settings = ctx.obj if isinstance(ctx.obj, Settings) else None
            fault = disk_fault_of(exc, settings.database_url) if settings else None
            if fault is None:
                raise
            raise click.ClickException(str(fault)) from None

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise _one_line(exc) from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # in the order registered: the order of the README


def _one_line(exc: click.UsageError) -> click.ClickException:
    """A usage error as every other error: one line (click prints three), exit status 1."""
    where = exc.ctx.command_path if exc.ctx is not None else "sdfarm"
    return click.ClickException(clip_echoes(f"{exc.format_message()} (see '{where} --help')"))


@click.group(cls=SdfarmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sdfarm")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """sdfarm: batch rendering for Stable Diffusion, from one job file to labelled grids.

    Settings come from SDFARM_* environment variables (see README).
    """
    try:
        ctx.obj = Settings.from_env()
    except SdfarmError as exc:
        raise click.ClickException(str(exc)) from None


def _register() -> None:
    from sdfarm.cli import farm, grid, history, jobs, render, serve

    for module in (render, grid, jobs, history, farm, serve):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    cli(prog_name="sdfarm")
