"""``sdfarm history`` and ``sdfarm prune`` as a user types them, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner, Result

from sdfarm.cli.main import cli
from sdfarm.db.models import JobStatus, utcnow
from tests.integration.history_support import add_jobs, db_url  # noqa: F401 (fixture)


def sdfarm(url: str, *args, input: str | None = None) -> Result:
    env = {"SDFARM_DATABASE_URL": url, "SDFARM_DEVICE": "cpu"}
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, input=input)


def images(tmp_path: Path, *names: str) -> list[str]:
    paths = []
    for name in names:
        path = tmp_path / f"{name}.png"
        path.write_bytes(b"png")
        paths.append(str(path))
    return paths


def test_paths_lists_the_images_of_done_jobs_one_per_line_best_match_first(db_url, tmp_path):
    short, long_, other = images(tmp_path, "short", "long", "other")
    add_jobs(db_url, [
        {"prompt": "lighthouse", "output_path": short},
        {"prompt": "a lighthouse seen from far away across the bay in the evening fog", "output_path": long_},
        {"prompt": "a lighthouse", "status": JobStatus.queued, "output_path": str(tmp_path / "not-yet.png")},
        {"prompt": "a castle", "output_path": other},
    ])
    result = sdfarm(db_url, "history", "--prompt", "lighthouse", "--paths")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [short, long_]


def test_json_gives_every_field_and_limit_0_gives_every_job(db_url):
    add_jobs(db_url, [{"prompt": f"a cat number {i}", "seed": i} for i in range(25)])
    rows = json.loads(sdfarm(db_url, "history", "--json", "--limit", 0).stdout)
    assert len(rows) == 25 and rows[0]["seed"] == 24  # newest first
    assert {"id", "prompt", "negative_prompt", "seed", "cfg", "steps", "sampler", "model",
            "model_hash", "width", "height", "output_path", "sha256", "created_at"} <= set(rows[0])
    assert len(json.loads(sdfarm(db_url, "history", "--json").stdout)) == 20


def test_the_table_shows_the_essentials_of_each_job(db_url):
    add_jobs(db_url, [{"prompt": "an ancient oak tree in a misty meadow " * 4, "seed": 4242,
                       "cfg": 6.5, "output_path": "/pictures/oak.png"}])
    out = sdfarm(db_url, "history", "--prompt", "oak").stdout
    for text in ("4242", "6.5", "Euler a", "dreamshaper_8", "an ancient oak tree", "/pictures/oak.png", "…"):
        assert text in out, text


def test_every_filter_option_reaches_the_search(db_url):
    now = utcnow()
    jobs = add_jobs(db_url, [
        {"prompt": "fox", "seed": 1, "cfg": 6.5, "steps": 30, "width": 768, "height": 512,
         "sampler": "DPM++ 2M", "schedule": "Karras", "negative_prompt": "blurry", "created_at": now - timedelta(days=1)},
        {"prompt": "fox", "seed": 2, "cfg": 9.0, "steps": 10, "model": "builtin:tiny", "model_hash": None,
         "created_at": now - timedelta(days=9), "status": JobStatus.failed},
    ])
    def found(*args):
        result = sdfarm(db_url, "history", "--json", *args)
        assert result.exit_code == 0, result.output
        return [r["id"] for r in json.loads(result.stdout)]
    recent, old = jobs
    assert found("--seed", 1) == [recent]
    assert found("--cfg", "6-7") == [recent] and found("--cfg", "9") == [old]
    assert found("--steps", "20-40") == [recent]
    assert found("--size", "768x512") == [recent]
    assert found("--sampler", "dpm++ 2m karras") == [recent]
    assert found("--sampler", "DPM++ 2M") == [recent] and found("--schedule", "karras") == [recent]
    assert found("--schedule", "Automatic") == [old]
    assert found("--negative", "blurry") == [recent]
    assert found("--model", "tiny") == [old] and found("--model", "879db5") == [recent]
    assert found("--status", "failed") == [old]
    assert found("--status", "failed", "--status", "done") == [recent, old]
    assert found("--since", "7d") == [recent] and found("--until", "7d") == [old]
    assert found("--since", (now - timedelta(days=9)).date().isoformat(),
                 "--until", (now - timedelta(days=9)).date().isoformat()) == [old]
    assert found("--sweep", 1) == [recent, old] and found("--sweep", 99) == []
    assert found("--prompt", "fox", "--cfg", "9", "--status", "failed", "--since", "30d") == [old]
    assert found("--offset", 1) == [old]


def test_a_model_that_matches_nothing_lists_the_models_there_are(db_url):
    add_jobs(db_url, [{"prompt": "a cat"}])
    result = sdfarm(db_url, "history", "--model", "sdxl")
    assert result.exit_code == 0
    assert "no matching jobs; models in the history: dreamshaper_8" in result.stderr
    assert result.stdout == "", "no empty table: stdout stays clean for a pipe"


def test_bad_filter_values_say_what_is_allowed(db_url):
    for args, message in [
        (("--cfg", "8-6"), "range '8-6' goes down"),
        (("--cfg", "seven"), "'seven' is not a number or a range like 6-8"),
        (("--steps", "20.5"), "'20.5' is not an integer or a range like 6-8"),
        (("--size", "512"), "'512' is not a size like 512x768"),
        (("--since", "yesterday"), "'yesterday' is not a time ago like 7d"),
        (("--status", "lost"), "'lost' is not one of"),
    ]:
        result = sdfarm(db_url, "history", *args)
        # One line, exit status 1, as every error (click's own usage errors are three lines)
        [line] = result.stderr.strip().splitlines()
        assert result.exit_code == 1 and message in line, (args, result.stderr)
        assert line.startswith("Error: ") and line.endswith(" history --help')")
    result = sdfarm(db_url, "history", "--prompt", "()")
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: --prompt '()': no words to search for (words are " \
                                    'letters and digits; use "a phrase", prefix*, -exclude)'


def test_missing_lists_done_jobs_whose_image_is_gone_and_prune_removes_them(db_url, tmp_path):
    kept, gone = images(tmp_path, "kept", "gone")
    jobs = add_jobs(db_url, [
        {"prompt": "kept", "output_path": kept}, {"prompt": "gone", "output_path": gone},
        {"prompt": "never rendered", "status": JobStatus.queued, "output_path": str(tmp_path / "q.png")},
    ])
    Path(gone).unlink()
    missing = json.loads(sdfarm(db_url, "history", "--missing", "--json").stdout)
    assert [r["id"] for r in missing] == [jobs[1]]
    assert sdfarm(db_url, "history", "--missing", "--paths").stdout.splitlines() == [gone]

    # A "no" keeps everything
    answer_no = sdfarm(db_url, "prune", "--missing", input="n\n")
    assert answer_no.exit_code == 0 and f"job {jobs[1]}: {gone}" in answer_no.stdout
    assert "Remove these 1 job rows? [y/N]" in answer_no.stdout and "nothing removed" in answer_no.stdout
    assert len(json.loads(sdfarm(db_url, "history", "--json").stdout)) == 3
    # A "yes" removes the row of the missing image, and only that one
    answer_yes = sdfarm(db_url, "prune", "--missing", input="y\n")
    assert "removed 1 job rows whose image is missing" in answer_yes.stdout
    left = json.loads(sdfarm(db_url, "history", "--json").stdout)
    assert sorted(r["id"] for r in left) == [jobs[0], jobs[2]]
    assert sdfarm(db_url, "history", "--prompt", "gone", "--json").stdout.strip() == "[]"
    assert sdfarm(db_url, "prune", "--missing", "--yes").stdout.strip() == "no jobs with a missing image"


def test_prune_yes_asks_nothing_and_prune_needs_a_criterion(db_url, tmp_path):
    (gone,) = images(tmp_path, "gone")
    add_jobs(db_url, [{"prompt": "gone", "output_path": gone}])
    Path(gone).unlink()
    result = sdfarm(db_url, "prune", "--missing", "--yes")
    assert "?" not in result.stdout and "removed 1 job rows" in result.stdout
    bare = sdfarm(db_url, "prune")
    assert bare.exit_code == 1 and "say what to prune: --missing" in bare.stderr
    assert len(bare.stderr.strip().splitlines()) == 1


def test_a_model_file_name_with_its_extension_finds_the_images_imported_without_it(db_url):
    rendered, imported = add_jobs(db_url, [{"prompt": "a cat"},
                                           {"prompt": "a dog", "model": "dreamshaper_8"}])
    rows = json.loads(sdfarm(db_url, "history", "--model", "dreamshaper_8.safetensors",
                             "--json").stdout)
    assert sorted(r["id"] for r in rows) == [rendered, imported]


def test_a_sampler_that_matches_nothing_lists_the_samplers_there_are(db_url):
    add_jobs(db_url, [{"prompt": "a cat"}, {"prompt": "a dog", "sampler": "DPM++ 2M"}])
    result = sdfarm(db_url, "history", "--sampler", "DPM++ 2M Karass")
    assert result.exit_code == 0 and result.stdout == ""
    assert "no matching jobs; samplers in the history: DPM++ 2M, Euler a" in result.stderr
