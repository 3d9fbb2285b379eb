"""``index.html`` of a sweep folder: every grid page as a table of thumbnails, with its axis
labels, each cell linking to its image and showing its parameters.

Static (no script), and safe: every piece of user text (prompts, labels, names) is
HTML-escaped, and links are relative, percent-encoded paths.
"""

from __future__ import annotations

import os
from html import escape
from pathlib import Path
from urllib.parse import quote

from sdfarm.grids.model import Grid, GridJob, GridPage
from sdfarm.metadata.a1111 import a1111_parameters

#: Largest thumbnail side in the page, in CSS pixels.
THUMB = 160

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #111; }
h2 { font-size: 1.1em; margin-top: 2em; }
table { border-collapse: collapse; }
th { font-weight: 600; padding: 4px 8px; vertical-align: middle; }
td { padding: 3px; text-align: center; vertical-align: top; }
td img { display: block; width: %dpx; max-height: %dpx; height: auto; image-rendering: pixelated; }
.cap { font-size: 0.75em; color: #555; max-width: %dpx; }
.missing { width: %dpx; height: %dpx; background: #ccc; color: #555; display: flex;
           align-items: center; justify-content: center; font-size: 0.8em; }
.prompt { white-space: pre-wrap; max-width: 60em; }
""" % (THUMB, THUMB, THUMB, THUMB, THUMB)


def index_html(grid: Grid, files: dict[str, tuple[str, str]]) -> str:
    """The page for ``grid``; ``files`` maps each page name to its grid PNG's file name and a
    note (e.g. that it was downscaled)."""
    title = f"{grid.name} (sweep {grid.sweep_id})"
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
           f"<h1>{escape(title)}</h1>",
           f"<p>{grid.done} of {grid.images} images rendered.</p>", "<ul>"]
    for axis in grid.axes:
        values = ", ".join(axis.labels)
        out.append(f"<li><b>{escape(axis.slot)}</b>: {escape(axis.param)} &mdash; "
                   f"{escape(values)}</li>")
    out.append("</ul>")
    for page in grid.pages:
        out.extend(_page(grid.folder, page, files.get(page.name)))
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _page(folder: Path, page: GridPage, file_note: tuple[str, str] | None) -> list[str]:
    heading = escape(page.titles[0]) if page.titles else escape(page.name)
    out = [f'<section id="{escape(page.name)}"><h2>{heading}</h2>']
    for title in page.titles[1:]:
        out.append(f'<p class="prompt">{escape(title)}</p>')
    if file_note:
        name, note = file_note
        out.append(f'<p><a href="{_href(name)}">{escape(name)}</a> {escape(note)}</p>')
    out.append("<table>")
    if any(page.columns):
        out.append("<tr>" + ("<th></th>" if any(page.rows) else "")
                   + "".join(f"<th>{escape(c)}</th>" for c in page.columns) + "</tr>")
    for row, row_label in enumerate(page.rows):
        cells = [f"<th>{escape(row_label)}</th>"] if any(page.rows) else []
        for col in range(len(page.columns)):
            cells.append(_cell(folder, page.cells.get((col, row))))
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table></section>")
    return out


def _cell(folder: Path, job: GridJob | None) -> str:
    if job is None:
        return '<td><div class="missing">no job</div></td>'
    spec = job.spec
    parameters = escape(a1111_parameters(spec), quote=True)
    caption = f"job {job.job_id} · seed {spec.seed}"
    if not job.done or not job.path.is_file():
        status = job.status if not job.done else "file missing"
        return (f'<td title="{parameters}"><div class="missing">{escape(status)}</div>'
                f'<div class="cap">{escape(caption)}</div></td>')
    href = _href(os.path.relpath(job.path, folder))
    return (f'<td><a href="{href}" title="{parameters}"><img src="{href}" loading="lazy" '
            f'alt="{escape(caption, quote=True)}"></a>'
            f'<div class="cap">{escape(caption)}</div></td>')


def _href(path: str) -> str:
    # Relative and percent-encoded: a path can never close the attribute or become a scheme.
    return escape(quote(Path(path).as_posix(), safe="/"), quote=True)
