"""``sdfarm index FOLDER``: images from AUTOMATIC1111, Forge, SD.Next and sdfarm become done
jobs that history finds; bad files are reported, not fatal; indexing again adds only what is new."""

from __future__ import annotations

import hashlib
import io
import json
import os
from datetime import datetime
from pathlib import Path

from click.testing import CliRunner
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from sqlalchemy import select

from sdfarm.cli.main import cli
from sdfarm.db.engine import session_factory
from sdfarm.db.models import Job, JobStatus, Sweep
from sdfarm.metadata.a1111 import model_display_name
from sdfarm.metadata.chunks import read_png_text
from sdfarm.metadata.generation import NO_PARAMETERS, generation_from_infotext
from sdfarm.metadata.infotext import parse_infotext
from tests.conftest import write_job
from tests.integration.history_support import db_url  # noqa: F401 (fixture)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "infotext"
#: The file time given to every fixture image: it becomes the job's date.
MADE = datetime(2025, 3, 14, 15, 9, 26)


def png(path: Path, parameters: str | None = None, color=(10, 20, 30)) -> Path:
    info = PngInfo()
    if parameters is not None:
        info.add_text("parameters", parameters)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="PNG", pnginfo=info)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    stamp = (MADE - datetime(1970, 1, 1)).total_seconds()
    os.utime(path, (stamp, stamp))
    return path


def sdfarm(url: str, *args, env: dict | None = None):
    return CliRunner().invoke(cli, [str(a) for a in args],
                              env={"SDFARM_DATABASE_URL": url, **(env or {})})


def fixture_folder(root: Path) -> dict[str, Path]:
    """A folder as a user has one: images of several tools in subfolders, and some junk."""
    files = {}
    for name, where in [("a1111_full", "a1111/2025-03-14"), ("no_negative", "a1111/2025-03-14"),
                        ("dynamic_prompts_template", "a1111"), ("forge_unknown_sampler", "forge"),
                        ("sdnext_restart", "sdnext"), ("malformed_no_settings", "a1111"),
                        ("malformed_bad_seed", "a1111")]:
        files[name] = png(root / where / f"{name}.png", (FIXTURES / f"{name}.txt").read_text("utf-8"))
    files["upper"] = png(root / "forge" / "UPPER.PNG", (FIXTURES / "no_negative.txt").read_text("utf-8"), (1, 1, 1))
    files["no_text"] = png(root / "plain.png")
    files["not_png"] = root / "notes.png"
    files["not_png"].write_text("these are my notes")
    files["truncated"] = root / "cut.png"
    files["truncated"].write_bytes(files["a1111_full"].read_bytes()[:300])
    files["cut_jpeg"] = root / "photo.jpg"
    files["cut_jpeg"].write_bytes(b"\xff\xd8\xff")
    return files


def jobs_by_path(url: str) -> dict[str, Job]:
    with session_factory(url)() as session:
        return {j.output_path: j for j in session.scalars(select(Job))}


def test_images_of_other_tools_become_done_jobs_of_an_imported_sweep(db_url, tmp_path):
    files = fixture_folder(tmp_path / "pictures")
    result = sdfarm(db_url, "index", tmp_path / "pictures", "-q")
    assert result.exit_code == 0, result.output
    # Good images are indexed; each bad one is reported with its reason, and the run goes on
    assert result.stdout.strip() == "indexed 6 images into sweep 1; 0 already indexed; 6 skipped"
    skipped = dict(line.removeprefix("skipped ").split(": ", 1) for line in result.stderr.splitlines())
    assert skipped == {
        str(files["malformed_no_settings"]): "malformed 'parameters' text: no settings line (Steps: ..., Sampler: ..., Seed: ...)",
        str(files["malformed_bad_seed"]): "malformed 'parameters' text: Seed 'twelve' is not an integer",
        str(files["no_text"]): NO_PARAMETERS,
        str(files["not_png"]): "not a PNG, JPEG or WebP image",
        str(files["truncated"]): "truncated PNG (tEXt chunk cut short)",
        str(files["cut_jpeg"]): "truncated JPEG (no image data)",
    }
    jobs = jobs_by_path(db_url)
    assert len(jobs) == 6
    full = jobs[str(files["a1111_full"])]
    assert (full.status, full.seed, full.sampler, full.schedule, full.eta, full.steps, full.cfg,
            full.width, full.height, full.clip_skip, full.model, full.model_hash) == (
        JobStatus.done, 3141592653, "DPM++ 2M", "Karras", None, 28, 6.5, 512, 768, 2,
        "v1-5-pruned-emaonly", "6ce0161689")
    assert full.negative_prompt.startswith("blurry, lowres, (worst quality:1.4),\nbad anatomy")
    assert full.sha256 == hashlib.sha256(files["a1111_full"].read_bytes()).hexdigest()
    assert full.created_at == MADE and full.finished_at == MADE
    assert full.extra_params["Hires upscaler"] == "R-ESRGAN 4x+"
    assert full.extra_params["ADetailer prompt"] == "a smiling face, detailed eyes: sharp focus"
    assert full.key == full.spec().key
    forge = jobs[str(files["forge_unknown_sampler"])]
    assert (forge.sampler, forge.schedule) == ("DPM++ 3M SDE", "Exponential")
    assert jobs[str(files["dynamic_prompts_template"])].extra_params["Template"].startswith("a photo of a {cat|dog|fox}")
    with session_factory(db_url)() as session:
        sweep = session.get(Sweep, full.sweep_id)
        assert (sweep.kind, sweep.name, sweep.output_dir) == ("imported", "index pictures",
                                                              str(tmp_path / "pictures"))


def test_indexed_images_are_found_like_rendered_ones(db_url, tmp_path):
    files = fixture_folder(tmp_path / "pictures")
    sdfarm(db_url, "index", tmp_path / "pictures", "-q")
    def paths(*args):
        return sdfarm(db_url, "history", "--paths", *args).stdout.splitlines()
    assert paths("--prompt", '"lighthouse on a cliff"') == [str(files["a1111_full"])]
    assert paths("--negative", "easynegative") == [str(files["a1111_full"])]
    assert paths("--sampler", "Restart") == [str(files["sdnext_restart"])]
    # A combined name is sampler and schedule; a base name finds every schedule
    assert paths("--sampler", "dpm++ 2m karras") == [str(files["a1111_full"])]
    assert paths("--sampler", "DPM++ 2M") == [str(files["a1111_full"])]
    assert paths("--sampler", "DPM++ 2M", "--schedule", "Exponential") == []
    assert paths("--schedule", "exponential") == [str(files["forge_unknown_sampler"])]
    assert paths("--model", "juggernautXL_v9", "--size", "832x1216") == [str(files["forge_unknown_sampler"])]
    assert paths("--since", "2025-03-14", "--until", "2025-03-14", "--prompt", "cyberpunk") == [str(files["sdnext_restart"])]
    assert paths("--until", "2025-03-13") == []


def test_indexing_again_adds_only_new_and_changed_files(db_url, tmp_path):
    files = fixture_folder(tmp_path / "pictures")
    sdfarm(db_url, "index", tmp_path / "pictures", "-q")
    again = sdfarm(db_url, "index", tmp_path / "pictures", "-q")
    assert again.stdout.strip() == "indexed 0 images; 6 already indexed; 6 skipped"
    # Given one image replaced by another under the same name, and one new image
    png(files["no_negative"], (FIXTURES / "no_negative.txt").read_text("utf-8").replace("Seed: 42", "Seed: 43"))
    png(tmp_path / "pictures" / "new" / "sdnext.png", (FIXTURES / "sdnext_restart.txt").read_text("utf-8"), (3, 3, 3))
    third = sdfarm(db_url, "index", tmp_path / "pictures", "-q")
    assert third.stdout.strip() == "indexed 2 images into sweep 2; 5 already indexed; 6 skipped"
    with session_factory(db_url)() as session:
        seeds = sorted(session.scalars(select(Job.seed).where(Job.output_path == str(files["no_negative"]))))
    assert seeds == [42, 43]


def test_index_of_something_that_is_not_a_folder_is_an_error(db_url, tmp_path):
    result = sdfarm(db_url, "index", tmp_path / "nowhere")
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {tmp_path / 'nowhere'}: not a folder (sdfarm index reads the images in a folder)"


def test_rendered_images_indexed_into_a_fresh_database_give_back_their_rows(
        db_url, settings, cli_env, tiny_model, tmp_path):
    # Given a sweep rendered by sdfarm, with a two-line prompt and a negative prompt with commas
    job = write_job(tmp_path, 'name = "round trip"\nmodel = "builtin:tiny"\n'
                              'prompt = "a red fox, sitting\\nin the snow: (cute:1.2)"\n'
                              'negative_prompt = "blurry, lowres"\nsampler = "DPM++ 2M Karras"\n'
                              'steps = 3\ncfg = 6.5\nwidth = 64\nheight = 64\nclip_skip = 2\n'
                              'seeds = [7, 8, 9]\n')
    rendered = sdfarm(settings.database_url, "render", job, "-q", env=cli_env)
    assert rendered.exit_code == 0, rendered.output
    originals = jobs_by_path(settings.database_url)
    # When its folder is indexed into another, empty database
    result = sdfarm(db_url, "index", settings.output_dir, "-q")
    assert result.stdout.strip() == "indexed 3 images into sweep 1; 0 already indexed; 0 skipped"
    # Then every image gives back the parameters of the job that rendered it
    same = ("model", "model_hash", "model_config", "prompt", "negative_prompt", "seed", "sampler",
            "schedule", "eta", "steps", "cfg", "width", "height", "clip_skip", "key", "sha256", "output_path")
    imported = jobs_by_path(db_url)
    assert set(imported) == set(originals)
    for path, original in originals.items():
        assert {k: getattr(imported[path], k) for k in same} == {k: getattr(original, k) for k in same}
        # and the A1111 text alone says the same, but for the model, which it names by name
        alone = generation_from_infotext(parse_infotext(read_png_text(Path(path).read_bytes())["parameters"])).spec
        assert alone == original.spec().replace(model=model_display_name(original.model))
    # And indexing the folder into the database that rendered it finds nothing new
    back = sdfarm(settings.database_url, "index", settings.output_dir, "-q")
    assert back.stdout.strip() == "indexed 0 images; 3 already indexed; 0 skipped"
    rows = json.loads(sdfarm(db_url, "history", "--prompt", "fox snow", "--json").stdout)
    assert sorted(r["seed"] for r in rows) == [7, 8, 9]


def test_an_indexed_image_of_each_sampling_control_reruns_to_identical_pixels(
        settings, cli_env, tiny_model, tmp_path):
    # Given images rendered with a schedule other than Automatic and with eta on DDIM, Euler
    # (where it changes nothing) and Euler a
    job = write_job(tmp_path, 'name = "controls"\nmodel = "builtin:tiny"\nprompt = "a fox"\n'
                              'steps = 3\nwidth = 64\nheight = 64\nseeds = [5]\nbatch_size = 1\n'
                              'schedule = "SGM Uniform"\neta = 0.6\n'
                              '[axes]\nx = { sampler = ["DDIM", "Euler", "Euler a"] }\n')
    rendered = sdfarm(settings.database_url, "render", job, "-q", env=cli_env)
    assert rendered.exit_code == 0, rendered.output
    originals = jobs_by_path(settings.database_url)
    # When the folder is indexed into a fresh database
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    env = dict(cli_env, SDFARM_DATABASE_URL=fresh)
    assert sdfarm(fresh, "index", settings.output_dir, "-q", env=env).exit_code == 0
    imported = jobs_by_path(fresh)
    for path, original in originals.items():
        # Then each image gives back its sampler, schedule and eta, and its key
        got = imported[path]
        assert (got.sampler, got.schedule, got.eta, got.key) == (
            original.sampler, original.schedule, original.eta, original.key)
        text = read_png_text(Path(path).read_bytes())["parameters"]
        eta_key = "Eta DDIM: 0.6" if original.sampler == "DDIM" else "Eta: 0.6"
        assert f"Sampler: {original.sampler}, Schedule type: SGM Uniform" in text and eta_key in text
        # And a rerun from the indexed row renders identical pixels
        rerun = sdfarm(fresh, "rerun", got.id, env=env)
        assert rerun.exit_code == 0, rerun.output
        assert "identical: every pixel matches the original" in rerun.stdout


TOOLS = Path(__file__).resolve().parents[1] / "fixtures" / "tools"


def png_with(path: Path, chunks: dict[str, str]) -> Path:
    info = PngInfo()
    for key, text in chunks.items():
        info.add_text(key, text)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (len(chunks), 2, 3)).save(path, format="PNG", pnginfo=info)
    return path


def exif_image(path: Path, fmt: str, comment: bytes) -> Path:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = comment
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (4, 5, 6)).save(path, format=fmt, exif=exif)
    return path


def test_images_of_every_tool_and_container_are_indexed_and_found(db_url, tmp_path):
    # Given a folder with an image of each tool, in PNG, JPEG and WebP
    root = tmp_path / "pictures"
    a1111 = (FIXTURES / "a1111_full.txt").read_text("utf-8")
    sdnext = (FIXTURES / "sdnext_restart.txt").read_text("utf-8").replace("Sampler: Restart, ", "")
    files = {
        "comfyui": png_with(root / "comfy" / "ComfyUI_00001_.png", {
            "prompt": (TOOLS / "comfyui_hires_lora.json").read_text("utf-8"), "workflow": "{}"}),
        "invokeai": png_with(root / "invoke" / "cabin.png", {
            "invokeai_metadata": (TOOLS / "invokeai_metadata.json").read_text("utf-8")}),
        "novelai": png_with(root / "nai" / "girl.png", {
            "Description": "1girl", "Software": "NovelAI", "Source": "NovelAI Diffusion V3 4BDE2A90",
            "Comment": (TOOLS / "novelai_comment.json").read_text("utf-8")}),
        "swarmui": png_with(root / "swarm" / "fox.png", {
            "parameters": (TOOLS / "swarmui_parameters.json").read_text("utf-8")}),
        "fooocus": png_with(root / "fooocus" / "lighthouse.png", {
            "parameters": (TOOLS / "fooocus_parameters.json").read_text("utf-8"),
            "fooocus_scheme": "fooocus"}),
        "jpeg": exif_image(root / "a1111" / "photo.JPG", "JPEG", b"UNICODE\0" + a1111.encode("utf-16-be")),
        "webp": exif_image(root / "a1111" / "photo.webp", "WEBP", b"UNICODE\0" + a1111.encode("utf-16-be")),
        "sdnext": png(root / "sdnext" / "city.png", sdnext),
    }
    # When it is indexed
    result = sdfarm(db_url, "index", root, "-q")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "indexed 8 images into sweep 1; 0 already indexed; 0 skipped"
    jobs = jobs_by_path(db_url)

    def row(name):
        j = jobs[str(files[name])]
        return (j.seed, j.steps, j.cfg, j.sampler, j.schedule, j.width, j.height, j.model)

    # Then each gives its settings, its sampler named as A1111 names it
    assert row("comfyui") == (884433221100, 28, 6.5, "DPM++ 2M SDE", "Karras", 832, 1216, "juggernautXL_v9")
    assert row("invokeai") == (2930587216, 30, 7.5, "DPM++ 2M", "Karras", 768, 512, "dreamshaper-8")
    assert row("novelai") == (3862213453, 28, 5.0, "DPM++ 2M", "Karras", 832, 1216, "NovelAI Diffusion V3")
    assert row("swarmui") == (1542877314, 30, 6.0, "DPM++ 2M", "SGM Uniform", 1152, 896, "sd_xl_base_1.0")
    assert row("fooocus") == (7417723350164496466, 30, 4.0, "DPM++ 2M SDE", "Karras", 1152, 896,
                              "juggernautXL_v8Rundiffusion")
    assert row("jpeg") == row("webp") == (3141592653, 28, 6.5, "DPM++ 2M", "Karras", 512, 768,
                                          "v1-5-pruned-emaonly")
    assert row("sdnext") == (5, 24, 8.0, "unknown", "Automatic", 1024, 1024, "dreamshaper_8")
    assert jobs[str(files["comfyui"])].extra_params["Lora"] == "film_grain: 0.8"
    assert jobs[str(files["jpeg"])].prompt == generation_from_infotext(parse_infotext(a1111)).spec.prompt

    # And history finds them like any other
    def paths(*args):
        return sdfarm(db_url, "history", "--paths", *args).stdout.splitlines()
    assert sorted(paths("--sampler", "DPM++ 2M", "--schedule", "Karras")) == sorted(
        str(files[k]) for k in ("invokeai", "novelai", "jpeg", "webp"))
    assert paths("--prompt", "水彩") == [str(files["comfyui"])]
    assert paths("--model", "juggernautXL_v9.safetensors") == [str(files["comfyui"])]
    assert paths("--sampler", "unknown") == [str(files["sdnext"])]


def test_a_nul_character_in_a_prompt_skips_that_image_not_the_run(db_url, tmp_path):
    # Given two good images and one whose prompt holds a NUL character (PostgreSQL's text
    # columns refuse it), recorded in the same batch
    good = (FIXTURES / "no_negative.txt").read_text("utf-8")
    png(tmp_path / "pictures" / "a.png", good)
    other = good.replace("Seed: 42", "Seed: 43")
    bad = png(tmp_path / "pictures" / "b.png", other)
    bad.write_bytes(_retext(bad.read_bytes(), other, "a\0cat\n" + other))
    png(tmp_path / "pictures" / "c.png", good.replace("Seed: 42", "Seed: 44"), (5, 5, 5))
    # When the folder is indexed
    result = sdfarm(db_url, "index", tmp_path / "pictures", "-q")
    # Then that one image is skipped with the reason, and the others are recorded
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "indexed 2 images into sweep 1; 0 already indexed; 1 skipped"
    assert result.stderr.strip() == (f"skipped {bad}: malformed 'parameters' text: prompt holds "
                                     "a NUL character")


def _retext(data: bytes, old: str, new: str) -> bytes:
    """``data`` with the tEXt chunk holding ``old`` replaced by one holding ``new``, written as
    a careless writer would (a NUL inside the text)."""
    import struct
    import zlib

    old_body = b"parameters\0" + old.encode("latin-1")
    at = data.index(old_body) - 8
    new_body = b"parameters\0" + new.encode("latin-1")
    chunk = (struct.pack(">I", len(new_body)) + b"tEXt" + new_body
             + struct.pack(">I", zlib.crc32(b"tEXt" + new_body)))
    return data[:at] + chunk + data[at + 12 + len(old_body):]
