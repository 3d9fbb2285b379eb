"""Each image's model family, the defaults it brings, and what it refuses. Pure.

A job file that leaves size, steps, CFG, sampler or Flux's guidance out gets its model's
family's (``sdfarm.families``), per cell: a model axis that mixes an SD 1.5 and an SDXL
checkpoint renders the first at 512 px and the second at 1024 px. What the file sets, or an
axis varies, is never replaced.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import attrgetter

from sdfarm.errors import JobFileError
from sdfarm.families import (
    FAMILIES,
    FAMILY_DEFAULTS,
    OPTIONAL_PARAMS,
    default_prediction,
    family_defaults,
    family_problem,
)
from sdfarm.modelref import BUILTIN_FAMILIES
from sdfarm.scheduler.jobfile import JobFile
from sdfarm.spec import RenderSpec

#: (family, prediction) of a model as detected from its files.
Detected = tuple[str, str]


def defaulted_params(job: JobFile) -> frozenset[str]:
    """The family-defaulted parameters this job leaves to the family: neither set by the file
    nor varied by an axis."""
    varied = set()
    for axis in job.axes:
        varied.update(("width", "height") if axis.param == "size" else (axis.param,))
    return frozenset(FAMILY_DEFAULTS) - job.explicit - varied


def model_family(job: JobFile, model: str, detected: Mapping[str, Detected]) -> Detected:
    """The (family, prediction) ``model`` renders as: what the job file says, else what was
    detected, else (a built-in model) what sdfarm knows of it, else the table's defaults."""
    found = detected.get(model) or _builtin(model)
    if "family" in job.explicit or found is None:
        family = job.base.family
        same = found is not None and found[0] == family
        prediction = (job.base.prediction if "prediction" in job.explicit
                      else found[1] if same else default_prediction(family))  # type: ignore[index]
        return family, prediction
    prediction = job.base.prediction if "prediction" in job.explicit else found[1]
    return found[0], prediction


def _builtin(model: str) -> Detected | None:
    if model.startswith("builtin:"):
        return BUILTIN_FAMILIES.get(model.removeprefix("builtin:"))
    return None


def family_changes(job: JobFile, model: str, detected: Mapping[str, Detected],
                   defaulted: frozenset[str]) -> dict[str, object]:
    """What a cell rendered with ``model`` takes from its family: the family, the prediction
    and the defaults of the parameters in ``defaulted``."""
    family, prediction = model_family(job, model, detected)
    changes: dict[str, object] = {"family": family, "prediction": prediction}
    for name, value in family_defaults(family, prediction).items():
        if name in defaulted:
            changes[name] = value
    return changes


#: What a family check reads of a spec, in this order.
_CHECKED = ("family", "prediction", "sampler", "schedule", "cfg", "width", "height",
            *OPTIONAL_PARAMS)
_CHECKED_VALUES = attrgetter(*_CHECKED, "model")


def check_families(job: JobFile, specs: Sequence[RenderSpec]) -> None:
    """Refuse the plan when an image's model family cannot render its parameters: one line
    naming the job file, the key (the axis that varies it, when one does) and the model."""
    seen = set(map(_CHECKED_VALUES, specs))  # a few distinct rows, even in a large grid
    axis_of = {a.param: a.key for a in job.axes}
    for row in sorted(seen, key=repr):
        values = dict(zip(_CHECKED, row))
        values["negative_prompt"] = values["negative_prompt"] or ""
        problem = family_problem(str(values["family"]), str(values["prediction"]), values)
        if problem is None:
            continue
        param, _, text = problem.partition(": ")
        model = row[-1]
        key = axis_of.get(param, axis_of.get("size", param) if param in ("width", "height")
                          else param)
        if key == param and param not in job.explicit and "model" in axis_of:
            key = axis_of["model"]  # a family default or a value the model axis brings
        title = FAMILIES[str(values["family"])].title
        raise JobFileError(job.path, key, f"{text} (model {model!r} is {title})")
