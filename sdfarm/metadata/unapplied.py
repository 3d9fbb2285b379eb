"""Which recorded settings of an image a rerun leaves out.

sdfarm applies what has a column; an imported image's other settings are kept as extras (as
the tool wrote them), and a rerun cannot apply them: a hires pass, a LoRA, ADetailer, a
ComfyUI second sampler. Some extras only describe the image or its maker and change no pixel:
those are not worth a warning. When a setting gains a column (LoRA, hires fix), ``index``
reads it into the column, it stops being an extra, and it leaves this list by itself.
Pure: standard library only.
"""

from __future__ import annotations

#: Extras that change no pixel: versions, names of the tool, hashes that identify files
#: named elsewhere, the prompt before wildcard or style expansion, and our own note.
DESCRIPTIVE = frozenset({
    "Version", "App", "Backend", "Template", "Negative Template", "Hashes", "Model hash",
    "Model base", "Source", "Raw prompt", "Raw negative prompt", "Styles", "Not applied",
})
#: Key of the note a rerun records among its own job's extras.
NOT_APPLIED = "Not applied"


def unapplied_settings(extra: dict[str, str] | None) -> list[str]:
    """The names (as the image wrote them) of the recorded settings a rerun cannot apply."""
    return [key for key in extra or {} if key not in DESCRIPTIVE]
