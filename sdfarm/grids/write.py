"""Writing a sweep's grids: one labelled PNG per page and ``index.html``, in the sweep folder.

Works for a partial sweep too (missing cells are placeholders), from the database alone.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from sdfarm.config import Settings
from sdfarm.db.engine import session_factory
from sdfarm.db.gridmarks import GRID_PNG_KEY
from sdfarm.files import write_atomic
from sdfarm.grids.draw import MAX_GRID_MEGAPIXELS, draw_page, layout_page
from sdfarm.grids.model import load_grid
from sdfarm.grids.page import index_html


@dataclass
class GridReport:
    folder: Path
    #: The grid PNGs, in page order.
    pngs: list[Path] = field(default_factory=list)
    index: Path | None = None
    #: (grid PNG, scale) for each page drawn smaller to fit the pixel budget.
    downscaled: list[tuple[Path, float]] = field(default_factory=list)
    #: Images the sweep planned; cells on the pages drawn; cells that show their image.
    images: int = 0
    cells: int = 0
    done: int = 0


def write_grids(settings: Settings, sweep_id: int, *,
                max_megapixels: float = MAX_GRID_MEGAPIXELS) -> GridReport:
    with session_factory(settings.database_url)() as session:
        grid = load_grid(session, sweep_id)
    report = GridReport(grid.folder, images=grid.images, done=grid.done, cells=grid.cells)
    grid.folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, tuple[str, str]] = {}
    for page in grid.pages:
        layout = layout_page(page, max_megapixels * 1e6)
        path = grid.folder / f"{page.name}.png"
        _save(draw_page(page, layout), path, f"sweep {sweep_id}, page {page.name}")
        report.pngs.append(path)
        note = f"{layout.width}×{layout.height}"
        if layout.scale < 1:
            report.downscaled.append((path, layout.scale))
            note += (f", downscaled to {layout.scale:.0%} to stay under "
                     f"{max_megapixels:g} megapixels")
        files[page.name] = (path.name, f"({note})")
    report.index = grid.folder / "index.html"
    write_atomic(report.index, index_html(grid, files).encode("utf-8"))
    return report


def _save(image: Image.Image, path: Path, mark: str) -> None:
    info = PngInfo()
    info.add_text(GRID_PNG_KEY, mark)
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    write_atomic(path, buf.getvalue())
