"""Grid page layout: sizes add up, fonts follow the cell size, labels wrap, placeholders show,
and a grid over the pixel budget is drawn smaller. Pillow only: pages are built in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdfarm.grids.draw import (
    MIN_FONT_SIZE,
    PLACEHOLDER,
    draw_page,
    font,
    layout_page,
    wrap,
)
from sdfarm.grids.model import GridJob, GridPage
from sdfarm.spec import RenderSpec


def page_of(cols: list[str], rows: list[str], size=(64, 64), images: dict | None = None,
            titles=("Sampler: Euler a · Seed: 1", "a lighthouse")) -> GridPage:
    """Given labels and, for some cells, image files; every other cell is still queued."""
    images = images or {}
    spec = RenderSpec(model="builtin:tiny", prompt="a lighthouse", seed=1, width=size[0], height=size[1])
    cells = {}
    for x in range(len(cols)):
        for y in range(len(rows)):
            path = images.get((x, y), Path("/nonexistent/never.png"))
            cells[(x, y)] = GridJob(job_id=1 + x + y * len(cols), status="done" if (x, y) in images else "queued",
                                    path=path, spec=spec, prompt=0, seed=0, x=x, y=y, z=None, extra=())
    return GridPage("grid", tuple(titles), tuple(cols), tuple(rows), cells, size)


def test_the_png_size_is_the_label_bands_plus_the_cells_plus_the_gaps():
    page = page_of(["CFG: 4", "CFG: 8", "CFG: 12"], ["Steps: 5", "Steps: 10"])
    layout = layout_page(page)
    image = draw_page(page, layout)
    assert image.size == (layout.width, layout.height)
    assert layout.width == layout.left_w + 3 * 64 + 2 * layout.gap
    assert layout.height == layout.title_h + layout.header_h + 2 * 64 + 1 * layout.gap
    assert layout.left_w > 0 and layout.header_h > 0 and layout.title_h > 0
    assert layout.cell_origin(2, 1) == (layout.left_w + 2 * (64 + layout.gap),
                                        layout.title_h + layout.header_h + 64 + layout.gap)


def test_a_grid_with_only_columns_has_no_row_label_band_and_no_title_band_without_titles():
    page = page_of(["CFG: 4", "CFG: 8"], [""], titles=())
    layout = layout_page(page)
    assert (layout.left_w, layout.title_h) == (0, 0)
    assert (layout.width, layout.height) == (2 * 64 + layout.gap, layout.header_h + 64)


def test_fonts_scale_with_the_cell_like_a1111_but_stay_readable_on_tiny_cells():
    assert layout_page(page_of(["a"], ["b"], size=(512, 512))).font_size == (512 + 512) // 25
    assert layout_page(page_of(["a"], ["b"], size=(512, 768))).font_size == (512 + 768) // 25
    assert layout_page(page_of(["a"], ["b"], size=(64, 64))).font_size == MIN_FONT_SIZE


def test_long_labels_wrap_within_their_band_and_end_in_an_ellipsis_past_the_line_limit():
    label = "Negative prompt: blurry, low quality, watermark, jpeg artifacts, extra fingers"
    page = page_of([label, "Negative prompt: (none)"], ["Steps: 10"], size=(128, 128))
    layout = layout_page(page)
    f = font(layout.font_size)
    lines = layout.column_lines[0]
    assert 1 < len(lines) <= 3
    assert all(f.getlength(line) <= layout.cell_w - layout.pad for line in lines)
    assert lines[-1].endswith("…")
    assert layout.header_h == 3 * layout.line_h + 2 * layout.pad


def test_a_word_longer_than_a_line_is_broken_inside_the_word():
    f = font(12)
    lines = wrap("Supercalifragilisticexpialidocious", f, 60, 10)
    assert len(lines) > 1 and "".join(lines) == "Supercalifragilisticexpialidocious"
    assert all(f.getlength(line) <= 60 for line in lines)


def test_cells_show_their_image_pixel_for_pixel_and_missing_cells_are_grey_placeholders(tmp_path):
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    page = page_of(["CFG: 4", "CFG: 8"], ["Steps: 5", "Steps: 10"], images={(1, 0): tmp_path / "a.png"})
    layout = layout_page(page)
    grid = np.asarray(draw_page(page, layout))
    x0, y0 = layout.cell_origin(1, 0)
    assert np.array_equal(grid[y0:y0 + 64, x0:x0 + 64], pixels)
    for col, row in ((0, 0), (0, 1), (1, 1)):
        x, y = layout.cell_origin(col, row)
        assert tuple(grid[y + 1, x + 1]) == PLACEHOLDER, "the corner of a missing cell is grey"
    # Labels are drawn: the column-label band above each column holds dark pixels.
    band = grid[layout.title_h:layout.title_h + layout.header_h]
    for col in range(2):
        x, _ = layout.cell_origin(col, 0)
        assert band[:, x:x + 64].min() < 100


def test_a_grid_over_the_pixel_budget_is_drawn_smaller_and_says_by_how_much():
    cols = [f"CFG: {c}" for c in range(10)]
    rows = [f"Steps: {s}" for s in range(8)]
    page = page_of(cols, rows, size=(512, 512))
    full = layout_page(page, max_pixels=1e12)
    assert full.scale == 1.0 and full.width * full.height > 4e6
    small = layout_page(page, max_pixels=4e6)
    assert small.scale < 1.0
    assert small.width * small.height <= 4e6
    assert small.cell_w == pytest.approx(512 * small.scale, abs=1)
    image = draw_page(page, small)
    assert image.size == (small.width, small.height)


class CountingFont:
    """A real font that counts what it is asked to measure: the work ``wrap`` does."""

    def __init__(self, size: int) -> None:
        self.font = font(size)
        self.calls = 0
        self.characters = 0

    def getlength(self, text: str) -> float:
        self.calls += 1
        self.characters += len(text)
        return self.font.getlength(text)


@pytest.mark.parametrize("prompt", ["a" * 100_000, "word " * 20_000],
                         ids=["100 kB without spaces", "100 kB of words"])
def test_wrapping_a_huge_prompt_measures_only_the_lines_it_shows(prompt):
    f = CountingFont(12)
    lines = wrap(prompt, f, 300, 4)
    assert len(lines) == 4 and lines[-1].endswith("…")
    assert all(f.font.getlength(line) <= 300 for line in lines)
    assert "".join(lines[:3]).replace(" ", "") == prompt.replace(" ", "")[:len("".join(lines[:3]).replace(" ", ""))]
    # Four lines of about 45 characters: a few dozen measurements of at most a line or so each,
    # whatever the length of the prompt (it measured 100,000-character words before).
    assert f.calls < 200
    assert f.characters < 20_000
