"""Grid images and index.html from a real sweep: the example grid rendered with builtin:tiny,
partial grids on demand, pages per prompt and seed, and a page that is safe to open."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import numpy as np
from click.testing import CliRunner
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from sqlalchemy import select

from sdfarm.cli.main import cli
from sdfarm.db.engine import session_factory
from sdfarm.db.models import Job, Sweep
from sdfarm.grids.draw import PLACEHOLDER, layout_page
from sdfarm.grids.model import load_grid
from sdfarm.grids.write import write_grids
from sdfarm.usecases.record import record
from sdfarm.usecases.render import load_plan
from sdfarm.worker.batch import render_batch
from tests.conftest import write_job

REPO = Path(__file__).resolve().parents[2]


def run(cli_env, *args) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args], env=cli_env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def jobs_of(settings, sweep_id) -> list[Job]:
    with session_factory(settings.database_url)() as s:
        return list(s.scalars(select(Job).where(Job.sweep_id == sweep_id).order_by(Job.seq)))


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_rendering_the_example_grid_writes_a_labelled_png_per_sampler_and_an_index(
        settings, cli_env, tiny_model, tmp_path):
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    code, out, err = run(cli_env, "render", tmp_path / "examples/cfg-steps-grid.toml", "-q")
    assert code == 0, err
    folder = Path(out.strip().splitlines()[-1])
    assert sorted(p.name for p in folder.glob("grid*.png")) == ["grid-z1.png", "grid-z2.png"]
    assert (folder / "index.html").is_file()
    assert "grids: 2 image(s)" in err and "all 24 images rendered" in err

    with session_factory(settings.database_url)() as session:
        grid = load_grid(session, 1)
    assert [p.titles[0] for p in grid.pages] == ["Sampler: Euler a · Seed: 1000",
                                                 "Sampler: DPM++ 2M Karras · Seed: 1000"]
    for page in grid.pages:
        layout = layout_page(page)
        image = pixels(folder / f"{page.name}.png")
        # The PNG is exactly the layout: label bands, 3 columns x 4 rows of 64 px, gaps.
        assert image.shape[:2] == (layout.height, layout.width)
        assert layout.width == layout.left_w + 3 * 64 + 2 * layout.gap
        assert layout.height == layout.title_h + layout.header_h + 4 * 64 + 3 * layout.gap
        assert page.columns == ("CFG: 4", "CFG: 8", "CFG: 12")
        assert page.rows == ("Steps: 5", "Steps: 10", "Steps: 15", "Steps: 20")
        # Every cell shows the image of the job with that cfg (column) and steps (row).
        for (col, row), job in page.cells.items():
            assert (job.spec.cfg, job.spec.steps) == ((4, 8, 12)[col], (5, 10, 15, 20)[row])
            x, y = layout.cell_origin(col, row)
            assert np.array_equal(image[y:y + 64, x:x + 64], pixels(job.path))


def test_grid_draws_a_partial_sweep_with_placeholders_for_what_is_not_rendered(
        settings, cli_env, tiny_model, tmp_path):
    job_file = write_job(tmp_path, 'model = "builtin:tiny"\nprompt = "a boat"\nwidth = 64\n'
                                   'height = 64\nseeds = [3]\n[axes]\nx = { cfg = [4, 9] }\n'
                                   'y = { steps = [2, 3] }\n')
    sweep_id = record(settings, load_plan(settings, job_file))
    first_two = [j.id for j in jobs_of(settings, sweep_id)[:2]]
    render_batch(first_two, settings)

    code, out, err = run(cli_env, "grid", sweep_id)
    assert code == 0, err
    assert "2 of 4 images rendered; 2 missing cells drawn as placeholders" in err
    folder = Path(out.strip())
    with session_factory(settings.database_url)() as session:
        (page,) = load_grid(session, sweep_id).pages
    layout = layout_page(page)
    image = pixels(folder / "grid.png")
    for (col, row), job in page.cells.items():
        x, y = layout.cell_origin(col, row)
        if job.job_id in first_two:
            assert np.array_equal(image[y:y + 64, x:x + 64], pixels(job.path))
        else:
            assert job.status == "queued" and tuple(image[y + 1, x + 1]) == PLACEHOLDER
    assert (folder / "index.html").read_text().count('class="missing">queued<') == 2


def test_each_prompt_and_seed_gets_its_own_page_named_by_its_indices(settings, tmp_path):
    job_file = write_job(tmp_path, 'model = "builtin:tiny"\nprompt = "a {red|blue} kite"\n'
                                   'seeds = [11, 12]\nwidth = 64\nheight = 64\n'
                                   '[axes]\nx = { cfg = [4, 9] }\n')
    sweep_id = record(settings, load_plan(settings, job_file))
    job_file.unlink()  # the grid comes from the database alone
    report = write_grids(settings, sweep_id)
    assert [p.name for p in report.pngs] == ["grid-p1-s1.png", "grid-p1-s2.png",
                                             "grid-p2-s1.png", "grid-p2-s2.png"]
    with session_factory(settings.database_url)() as session:
        pages = load_grid(session, sweep_id).pages
    assert [p.titles for p in pages] == [("Seed: 11", "a red kite"), ("Seed: 12", "a red kite"),
                                         ("Seed: 11", "a blue kite"), ("Seed: 12", "a blue kite")]
    assert all(len(p.cells) == 2 and p.rows == ("",) for p in pages)
    assert (report.images, report.done) == (8, 0)


def test_the_index_page_escapes_prompts_and_links_only_to_files_in_the_sweep(
        settings, tiny_model, tmp_path):
    evil = '<script>alert(1)</script> & \\"quoted\\" <img src=x onerror=alert(2)>'
    job_file = write_job(tmp_path, f'name = "../../<b>evil</b>"\nmodel = "builtin:tiny"\n'
                                   f'prompt = "a kite {evil}"\nsteps = 2\nwidth = 64\nheight = 64\n'
                                   'seeds = [1]\n[axes]\nx = { cfg = [4, 9] }\n')
    sweep_id = record(settings, load_plan(settings, job_file))
    render_batch([j.id for j in jobs_of(settings, sweep_id)], settings)
    report = write_grids(settings, sweep_id)

    assert report.folder.parent == settings.output_dir, "the sweep name cannot leave the output folder"
    html = report.index.read_text(encoding="utf-8")
    assert "<script" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quoted&quot;" in html
    assert "<b>evil</b>" not in html and "&lt;b&gt;evil&lt;/b&gt;" in html
    links = re.findall(r'(?:href|src)="([^"]+)"', html)
    assert links and all(not re.match(r"^[a-z]+:", link) for link in links)
    for link in links:
        target = (report.folder / unquote(link)).resolve()
        assert target.is_file() and target.parent == report.folder.resolve()
    assert len([link for link in links if link.endswith("-1.png")]) == 4  # 2 cells: a link and an img each


def test_grid_refuses_a_sweep_without_axes_and_an_unknown_sweep_in_one_line(settings, cli_env, tmp_path):
    job_file = write_job(tmp_path, 'model = "builtin:tiny"\nprompt = "a kite"\nseeds = [1, 2]\n')
    sweep_id = record(settings, load_plan(settings, job_file))
    result = CliRunner().invoke(cli, ["grid", str(sweep_id)], env=cli_env)
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"Error: sweep {sweep_id} has no axes, so there is no grid to "
                                     "draw; add an [axes] table to the job file for a grid")
    result = CliRunner().invoke(cli, ["grid", "99"], env=cli_env)
    assert result.exit_code == 1 and result.stderr.strip().startswith("Error: no sweep 99;")
    with session_factory(settings.database_url)() as s:
        assert s.get(Sweep, sweep_id).axes is None


def test_index_skips_the_grids_sdfarm_wrote_without_a_word(settings, tmp_path):
    # Given a sweep folder with its grid (placeholders: nothing rendered) and an A1111 image
    job_file = write_job(tmp_path, 'model = "builtin:tiny"\nprompt = "a boat"\nwidth = 64\n'
                                   'height = 64\nseeds = [3]\n[axes]\nx = { cfg = [4, 9] }\n'
                                   'z = { steps = [2, 3] }\n')
    sweep_id = record(settings, load_plan(settings, job_file))
    report = write_grids(settings, sweep_id)
    assert [p.name for p in report.pngs] == ["grid-z1.png", "grid-z2.png"]
    from sdfarm.metadata.chunks import read_png_text

    assert read_png_text(report.pngs[1].read_bytes())["sdfarm-grid"] == f"sweep {sweep_id}, page grid-z2"
    info = PngInfo()
    info.add_text("parameters", "a boat\nSteps: 2, Sampler: Euler a, CFG scale: 4, Seed: 3, Size: 64x64")
    Image.new("RGB", (64, 64)).save(report.folder / "elsewhere.png", pnginfo=info)
    # When the folder is indexed into another database
    fresh = {"SDFARM_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}"}
    result = CliRunner().invoke(cli, ["index", str(report.folder), "-q"], env=fresh)
    # Then the image is indexed, and the grids are neither indexed nor reported as skipped
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "indexed 1 images into sweep 1; 0 already indexed; 0 skipped"
    assert result.stderr == ""


def test_the_grid_summary_counts_what_it_shows_after_a_file_is_deleted_and_its_row_pruned(
        settings, cli_env, tiny_model, tmp_path):
    # Given a 2 x 2 grid, all rendered
    job_file = write_job(tmp_path, 'model = "builtin:tiny"\nprompt = "a boat"\nsteps = 2\n'
                                   'width = 64\nheight = 64\nseeds = [3]\n'
                                   '[axes]\nx = { cfg = [4, 9] }\ny = { steps = [2, 3] }\n')
    sweep_id = record(settings, load_plan(settings, job_file))
    jobs = jobs_of(settings, sweep_id)
    render_batch([j.id for j in jobs], settings)
    assert "all 4 images rendered" in run(cli_env, "grid", sweep_id)[2]
    # When one image file is deleted
    Path(jobs[0].output_path).unlink()
    code, out, err = run(cli_env, "grid", sweep_id)
    # Then the summary and the page count it as missing
    assert code == 0, err
    assert "3 of 4 images rendered; 1 missing cells drawn as placeholders" in err
    folder = Path(out.strip())
    assert "3 of 4 images rendered." in (folder / "index.html").read_text()
    assert (folder / "index.html").read_text().count('class="missing">file missing<') == 1
    # When its row is pruned too
    assert run(cli_env, "prune", "--missing", "--yes")[0] == 0
    assert len(jobs_of(settings, sweep_id)) == 3
    code, out, err = run(cli_env, "grid", sweep_id)
    # Then it is still a missing cell of the four, now with no job
    assert "3 of 4 images rendered; 1 missing cells drawn as placeholders" in err
    assert (folder / "index.html").read_text().count('class="missing">no job<') == 1


def test_pages_that_differ_by_their_negative_prompt_name_it_in_their_title(settings, tmp_path):
    job_file = write_job(tmp_path, 'model = "builtin:tiny"\nprompt = "a boat"\n'
                                   'negative_prompt = "{blurry|dark}"\nseeds = [3]\n'
                                   'width = 64\nheight = 64\n[axes]\nx = { cfg = [4, 9] }\n')
    sweep_id = record(settings, load_plan(settings, job_file))
    report = write_grids(settings, sweep_id)
    with session_factory(settings.database_url)() as session:
        pages = load_grid(session, sweep_id).pages
    assert [p.titles for p in pages] == [("Seed: 3", "a boat", "Negative prompt: blurry"),
                                         ("Seed: 3", "a boat", "Negative prompt: dark")]
    drawn = [" ".join(layout_page(p).title_lines) for p in pages]
    assert drawn[0].endswith("Negative prompt: blurry") and drawn[1].endswith("Negative prompt: dark")
    html = report.index.read_text()
    assert "Negative prompt: blurry" in html and "Negative prompt: dark" in html
    # A negative prompt the pages share is not repeated on each
    same = write_job(tmp_path, 'model = "builtin:tiny"\nprompt = "a {red|blue} boat"\n'
                               'negative_prompt = "blurry"\nseeds = [3]\nwidth = 64\nheight = 64\n'
                               '[axes]\nx = { cfg = [4, 9] }\n', name="same.toml")
    same_id = record(settings, load_plan(settings, same))
    with session_factory(settings.database_url)() as session:
        assert [p.titles for p in load_grid(session, same_id).pages] == [
            ("Seed: 3", "a red boat"), ("Seed: 3", "a blue boat")]


def test_image_files_are_numbered_in_grid_order_so_a_folder_listing_reads_like_the_grid(
        settings, tmp_path):
    job_file = write_job(tmp_path, 'model = "builtin:tiny"\nprompt = "a {red|blue} boat"\n'
                                   'seeds = [3, 4]\nwidth = 64\nheight = 64\n[axes]\n'
                                   'x = { cfg = [4, 9] }\ny = { steps = [2, 3] }\n'
                                   'z = { sampler = ["Euler a", "Euler"] }\n')
    sweep_id = record(settings, load_plan(settings, job_file))
    with session_factory(settings.database_url)() as session:
        pages = load_grid(session, sweep_id).pages
    # Page by page, row by row, column by column: the files' numbers count up from 0
    in_grid_order = [page.cells[(x, y)].path.name for page in pages
                     for y in range(len(page.rows)) for x in range(len(page.columns))]
    assert len(in_grid_order) == 32 == len(set(in_grid_order))
    assert [int(name.split("-")[0]) for name in in_grid_order] == list(range(32))
    assert in_grid_order == sorted(in_grid_order)
    # ...while the render order differs (batches group steps and samplers)
    assert [Path(j.output_path).name for j in jobs_of(settings, sweep_id)] != in_grid_order
