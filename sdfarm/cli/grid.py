"""``sdfarm grid SWEEP_ID``: write a sweep's labelled grid images and index.html now, also
for a sweep that is still rendering (missing cells are placeholders)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from sdfarm.config import Settings

if TYPE_CHECKING:
    from sdfarm.grids.write import GridReport

#: Shown as the default; the value itself is ``sdfarm.grids.draw.MAX_GRID_MEGAPIXELS`` (Pillow
#: is imported only when a grid is drawn, not on every command).
_DEFAULT_MEGAPIXELS = "64"


def echo_grid_report(report: GridReport) -> None:
    """What ``render`` and ``grid`` say about the grids they wrote (on stderr)."""
    # Counted from what the grid shows: a deleted file or a pruned row is not rendered.
    placeholders = report.cells - report.done
    undrawn = report.images - report.cells
    if not placeholders and not undrawn:
        state = f"all {report.images} images rendered"
    else:
        state = f"{report.done} of {report.images} images rendered"
        if placeholders:
            state += f"; {placeholders} missing cells drawn as placeholders"
        if undrawn:
            state += f"; {undrawn} on pages with no job left, not drawn"
    click.echo(f"grids: {len(report.pngs)} image(s) and {report.index} ({state})", err=True)
    scales = dict(report.downscaled)
    for path in report.pngs:
        note = (f" (downscaled to {scales[path]:.0%} to stay under the size limit)"
                if path in scales else "")
        click.echo(f"  {path}{note}", err=True)


@click.command()
@click.argument("sweep_id", type=int)
@click.option("--max-megapixels", type=click.FloatRange(min=0.1), default=None,
              show_default=_DEFAULT_MEGAPIXELS,
              help="Grid images larger than this are drawn downscaled.")
@click.pass_obj
def grid(settings: Settings, sweep_id: int, max_megapixels: float | None) -> None:
    """Write SWEEP_ID's grid PNGs (one per z value, prompt and seed) and index.html into its
    folder; prints the folder."""
    from sdfarm.grids.draw import MAX_GRID_MEGAPIXELS
    from sdfarm.grids.write import write_grids

    report = write_grids(settings, sweep_id, max_megapixels=max_megapixels or MAX_GRID_MEGAPIXELS)
    echo_grid_report(report)
    click.echo(report.folder)


COMMANDS = [grid]
