"""A job file given as text (pasted in the page, or uploaded): planned exactly as ``sdfarm plan``
plans a file on disk, its errors naming the uploaded file's name, and summarised as ``sdfarm
plan`` prints it."""

from __future__ import annotations

from sdfarm.config import Settings
from sdfarm.errors import JobFileError
from sdfarm.scheduler.jobfile import parse_job_file
from sdfarm.scheduler.plan import Plan
from sdfarm.usecases import plan_report as report
from sdfarm.usecases.render import expand_job, plan_outlook

#: The name a pasted job file gets in errors and in the sweep's record.
PASTED = "pasted.toml"
#: Largest job file the page takes (a 100,000-prompt file is well under this).
MAX_JOB_FILE_BYTES = 1024 * 1024


def plan_text(settings: Settings, text: str, name: str | None = None, *,
              build_builtins: bool = False) -> Plan:
    """Validate and expand the job file ``text``; a :class:`JobFileError` names ``name`` (the
    uploaded file's name), the key and what is allowed, as the CLI's one line does.

    The sweep records ``text`` as its job file text, as a submit from disk does. Relative paths
    in the file (an init image, a VAE) are taken from the server's working folder.
    ``build_builtins``: as :func:`~sdfarm.usecases.render.load_plan` (a render here wants it).
    """
    name = (name or "").strip() or PASTED
    if len(text.encode("utf-8", "surrogatepass")) > MAX_JOB_FILE_BYTES:
        raise JobFileError(name, None, f"is larger than {MAX_JOB_FILE_BYTES // 1024} KiB")
    return expand_job(settings, parse_job_file(text, name), build_builtins=build_builtins)


def plan_summary(settings: Settings, plan: Plan, *, force: bool = False) -> dict[str, object]:
    """What ``sdfarm plan`` says about ``plan``: the ``--json`` fields (images, reused, to
    render, estimate...), the lines it prints, and the warnings it prints before them."""
    outlook = plan_outlook(settings, plan, force=force)
    summary = report.plan_summary(plan, outlook)
    summary.update(lines=report.plan_lines(plan, outlook), warnings=list(plan.job.warnings))
    return summary
