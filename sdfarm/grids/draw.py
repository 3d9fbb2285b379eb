"""Drawing one grid page as a labelled PNG, the way AUTOMATIC1111's X/Y/Z plot looks.

Column labels on top, row labels at the left, what the page fixes (z value, seed, prompt) in a
title band above; fonts scale with the cell size (A1111's (width + height) / 25, never below a
readable minimum); long labels wrap; a cell with no image yet is a grey placeholder naming its
status. A grid larger than the pixel budget is drawn at a smaller scale: the layout is computed
at that scale, so memory never exceeds the budget.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from sdfarm.grids.model import GridJob, GridPage

#: Default pixel budget of one grid image (A1111 allows 200 MP; this keeps a page viewable).
MAX_GRID_MEGAPIXELS = 64.0
#: Smallest label font, in pixels: tiny cells (64 px) still get readable labels.
MIN_FONT_SIZE = 12
#: Most wrapped lines a column label, the page labels and the prompt title may take.
MAX_LABEL_LINES = 3
MAX_PROMPT_LINES = 4
BACKGROUND = (255, 255, 255)
INK = (0, 0, 0)
PLACEHOLDER = (204, 204, 204)
PLACEHOLDER_INK = (96, 96, 96)
ELLIPSIS = "…"
#: Characters narrow in any font: no line holds more characters than fit of these.
_NARROW = " .,:;'|!il"

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@lru_cache(maxsize=32)
def font(size: int) -> Font:
    """DejaVu Sans where installed, else Pillow's own scalable default font."""
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size)


@dataclass(frozen=True)
class Layout:
    """Every size on a page, in pixels. The image is ``width`` x ``height``."""

    #: 1.0, or the factor the cells were shrunk by to fit the pixel budget.
    scale: float
    cols: int
    rows: int
    cell_w: int
    cell_h: int
    gap: int
    font_size: int
    pad: int
    line_h: int
    #: Height of the title band, of the column-label band, width of the row-label band.
    title_h: int
    header_h: int
    left_w: int
    title_lines: tuple[str, ...]
    column_lines: tuple[tuple[str, ...], ...]
    row_lines: tuple[tuple[str, ...], ...]

    @property
    def width(self) -> int:
        return self.left_w + self.cols * self.cell_w + (self.cols - 1) * self.gap

    @property
    def height(self) -> int:
        return self.title_h + self.header_h + self.rows * self.cell_h + (self.rows - 1) * self.gap

    def cell_origin(self, col: int, row: int) -> tuple[int, int]:
        """Top-left corner of the cell box at (column, row)."""
        return (self.left_w + col * (self.cell_w + self.gap),
                self.title_h + self.header_h + row * (self.cell_h + self.gap))


def layout_page(page: GridPage, max_pixels: float = MAX_GRID_MEGAPIXELS * 1e6) -> Layout:
    """The page's layout at full scale, or shrunk until it fits ``max_pixels``."""
    scale = 1.0
    layout = _layout(page, scale)
    for _ in range(12):
        area = layout.width * layout.height
        if area <= max_pixels or (layout.cell_w == 1 and layout.cell_h == 1):
            break
        # Labels do not shrink below the minimum font, so aim a little under the budget.
        scale *= math.sqrt(max_pixels / area) * 0.98
        layout = _layout(page, scale)
    return layout


def _layout(page: GridPage, scale: float) -> Layout:
    cell_w = max(1, round(page.cell_size[0] * scale))
    cell_h = max(1, round(page.cell_size[1] * scale))
    size = max(MIN_FONT_SIZE, (cell_w + cell_h) // 25)
    f = font(size)
    pad = size // 2
    line_h = _line_height(f)
    gap = max(2, size // 6)
    cols, rows = len(page.columns), len(page.rows)

    has_columns = any(page.columns)
    column_lines = tuple(wrap(label, f, cell_w - pad, MAX_LABEL_LINES) for label in page.columns)
    header_h = (max(map(len, column_lines)) * line_h + 2 * pad) if has_columns else 0

    left_w = 0
    row_lines: tuple[tuple[str, ...], ...] = tuple(() for _ in page.rows)
    if any(page.rows):
        widest = max(f.getlength(label) for label in page.rows) + 2 * pad
        # As wide as the longest label, within A1111's 3/4 of a cell (or a few words).
        left_w = math.ceil(min(widest, max(cell_w * 3 // 4, 8 * size)))
        fits = max(1, cell_h // line_h)
        row_lines = tuple(wrap(label, f, left_w - 2 * pad, fits) for label in page.rows)

    grid_w = left_w + cols * cell_w + (cols - 1) * gap
    title_lines: list[str] = []
    if page.titles:
        title_lines += wrap(page.titles[0], f, grid_w - 2 * pad, MAX_LABEL_LINES)
        for extra in page.titles[1:]:
            title_lines += wrap(extra, f, grid_w - 2 * pad, MAX_PROMPT_LINES)
    title_h = len(title_lines) * line_h + 2 * pad if title_lines else 0
    return Layout(scale, cols, rows, cell_w, cell_h, gap, size, pad, line_h, title_h, header_h,
                  left_w, tuple(title_lines), column_lines, row_lines)


def _line_height(f: Font) -> int:
    ascent, descent = f.getmetrics() if hasattr(f, "getmetrics") else (f.size, 0)
    return ascent + descent + max(1, (ascent + descent) // 5)


def wrap(text: str, f: Font, width: float, max_lines: int) -> tuple[str, ...]:
    """``text`` in lines no wider than ``width``, broken at spaces (inside a word that is
    wider than a line); past ``max_lines`` the last line ends with an ellipsis.

    The work is bounded by what is shown, not by the text: wrapping stops one line past
    ``max_lines``, and a word is measured only up to what a line can hold (a 100 kB prompt
    costs as much as a short one)."""
    width = max(width, f.getlength("M"))
    # No line holds more characters than fit of the narrowest one; measuring longer
    # stretches only to learn that they do not fit would cost the length of the text.
    narrowest = min(f.getlength(c) for c in _NARROW)
    capacity = math.ceil(width / narrowest) + 1 if narrowest > 0 else 1 << 30
    lines: list[str] = []
    for word in _words(text):
        if len(lines) > max_lines:
            break
        if lines:
            candidate = f"{lines[-1]} {word}"
            if len(candidate) <= capacity and f.getlength(candidate) <= width:
                lines[-1] = candidate
                continue
        while len(lines) <= max_lines and len(word) > 1 and not _fits(word, f, width, capacity):
            cut = _fitting_prefix(word, f, width, capacity)
            lines.append(word[:cut])
            word = word[cut:]
        if len(lines) <= max_lines:
            lines.append(word)
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and f.getlength(last + ELLIPSIS) > width:
            last = last[:-1]
        lines = lines[:max_lines - 1] + [last.rstrip() + ELLIPSIS]
    return tuple(lines) if lines != [""] else ()


def _words(text: str) -> Iterator[str]:
    """The words of ``text`` one by one, without splitting all of a long text up front."""
    return (m.group() for m in re.finditer(r"\S+", text))


def _fits(word: str, f: Font, width: float, capacity: int) -> bool:
    return len(word) <= capacity and f.getlength(word) <= width


def _fitting_prefix(word: str, f: Font, width: float, capacity: int) -> int:
    """The longest prefix of ``word`` (at least one character) no wider than ``width``, by
    bisection over at most ``capacity`` characters."""
    lo, hi = 1, min(len(word) - 1, capacity)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if f.getlength(word[:mid]) <= width:
            lo = mid
        else:
            hi = mid - 1
    return lo


def draw_page(page: GridPage, layout: Layout) -> Image.Image:
    image = Image.new("RGB", (layout.width, layout.height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    f = font(layout.font_size)
    y = layout.pad
    for line in layout.title_lines:
        draw.text((layout.pad, y), line, font=f, fill=INK)
        y += layout.line_h
    for col, lines in enumerate(layout.column_lines):
        x0, _ = layout.cell_origin(col, 0)
        top = layout.title_h + layout.header_h - layout.pad - len(lines) * layout.line_h
        _centred_lines(draw, lines, f, x0, layout.cell_w, top, layout.line_h)
    for row, lines in enumerate(layout.row_lines):
        _, y0 = layout.cell_origin(0, row)
        top = y0 + (layout.cell_h - len(lines) * layout.line_h) // 2
        _centred_lines(draw, lines, f, 0, layout.left_w, top, layout.line_h)
    for row in range(layout.rows):
        for col in range(layout.cols):
            _draw_cell(image, draw, page.cells.get((col, row)), layout, col, row)
    return image


def _centred_lines(draw: ImageDraw.ImageDraw, lines: tuple[str, ...], f: Font, x0: int,
                   width: int, top: int, line_h: int) -> None:
    for n, line in enumerate(lines):
        x = x0 + (width - f.getlength(line)) / 2
        draw.text((x, top + n * line_h), line, font=f, fill=INK)


def _draw_cell(image: Image.Image, draw: ImageDraw.ImageDraw, job: GridJob | None,
               layout: Layout, col: int, row: int) -> None:
    x0, y0 = layout.cell_origin(col, row)
    picture = _open(job) if job is not None and job.done else None
    if picture is not None:
        w = max(1, round(picture.width * layout.scale))
        h = max(1, round(picture.height * layout.scale))
        if (w, h) != picture.size:
            picture = picture.resize((w, h), Image.Resampling.LANCZOS)
        image.paste(picture, (x0 + (layout.cell_w - w) // 2, y0 + (layout.cell_h - h) // 2))
        return
    draw.rectangle((x0, y0, x0 + layout.cell_w - 1, y0 + layout.cell_h - 1), fill=PLACEHOLDER)
    if job is None:
        status = "no job"
    elif job.done:
        status = "file missing"
    else:
        status = job.status
    small = font(max(8, min(layout.font_size, layout.cell_h // 3)))
    lines = wrap(status, small, layout.cell_w - 4, 2)
    line_h = _line_height(small)
    top = y0 + (layout.cell_h - len(lines) * line_h) // 2
    for n, line in enumerate(lines):
        x = x0 + (layout.cell_w - small.getlength(line)) / 2
        draw.text((x, top + n * line_h), line, font=small, fill=PLACEHOLDER_INK)


def _open(job: GridJob) -> Image.Image | None:
    try:
        with Image.open(job.path) as im:
            return im.convert("RGB")
    except (OSError, ValueError):  # deleted or unreadable since it was rendered
        return None
