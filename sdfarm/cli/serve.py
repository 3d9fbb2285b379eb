"""``sdfarm serve``: the web page over this database and output folder."""

from __future__ import annotations

import ipaddress
import os

import click

from sdfarm.config import Settings

#: The environment variable holding the token a non-loopback server requires.
TOKEN_ENV = "SDFARM_WEB_TOKEN"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name: it may resolve to anything
        return False


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help=f"Address to listen on; anything but loopback requires {TOKEN_ENV}.")
@click.option("--port", type=click.IntRange(0, 65535), default=8188, show_default=True)
@click.pass_obj
def serve(settings: Settings, host: str, port: int) -> None:
    """Serve the web page: sweeps, grids, history, jobs, workers, submit; JSON under /api
    (documented at /docs). Binds 127.0.0.1 unless told otherwise."""
    token = os.environ.get(TOKEN_ENV) or None
    local = is_loopback(host)
    if not local and token is None:
        raise click.ClickException(
            f"refusing to listen on {host}: beyond localhost the page needs a token; set "
            f"{TOKEN_ENV} (e.g. to the output of `openssl rand -hex 16`) and log in with it")
    import uvicorn
    from sqlalchemy.engine import make_url

    from sdfarm.web.app import create_app

    app = create_app(settings, token=token, local_host=local)
    shown = f"[{host}]" if ":" in host else host
    # A PostgreSQL URL may carry its password: a terminal or a log is no place for it.
    database = make_url(settings.database_url).render_as_string(hide_password=True)
    click.echo(f"sdfarm serve: http://{shown}:{port}/ (database {database}, "
               f"images {settings.output_dir})" + ("; token required" if token else ""))
    uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="on")


COMMANDS = [serve]
