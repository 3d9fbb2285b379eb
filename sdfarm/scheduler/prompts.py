"""Prompt templates: ``{a|b}`` variants and ``__name__`` wildcards, expanded by dynamicprompts.

The syntax is the sd-dynamic-prompts extension's, parsed and sampled by its own library; this
module only adds what a render queue needs on top. Pure: no torch, no DB.

Decisions, each pinned by a test:

* A missing wildcard is an error raised before anything is produced. dynamicprompts would
  log a warning and render the literal ``__name__`` into every image of the sweep.
* Wildcard values keep their file's order (dynamicprompts sorts them by default), because a
  grid's rows should read as the user wrote the file. Repeated lines in a file count once,
  as dynamicprompts does.
* Combinatorial output is deduplicated, first occurrence kept: two equal prompts are two
  jobs with one key, i.e. the same image twice. dynamicprompts already does this within one
  ``{...}``; we extend it across the whole template (``{a|ab}{b|}`` gives "ab" once).
  Random draws are kept as drawn: a repeat is what a draw of N means.
* Both modes draw from ``random.Random(seed)``: random mode as ``RandomPromptGenerator(seed=)``
  does, and combinatorial mode too, so a ``{~a|b}`` inside a grid is reproducible instead of
  using dynamicprompts' unseeded module-wide generator.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path

from dynamicprompts.commands import (
    Command,
    LiteralCommand,
    SequenceCommand,
    VariantCommand,
    WildcardCommand,
    WrapCommand,
)
from dynamicprompts.commands.variable_commands import (
    VariableAccessCommand,
    VariableAssignmentCommand,
)
from dynamicprompts.enums import SamplingMethod
from dynamicprompts.parser.parse import parse
from dynamicprompts.sampling_context import SamplingContext
from dynamicprompts.wildcards import WildcardManager

from sdfarm.scheduler.jobfile import MAX_PROMPTS, PromptMode
from sdfarm.scheduler.promptsyntax import is_literal

#: Most options one ``{...}`` variant may have. dynamicprompts' parser takes about a millisecond
#: per option and its combinatorial sampler compares every option with every other one, so 1,000
#: options plan in about a second and 20,000 in over a minute and a half; a wildcard file of
#: 20,000 lines takes half a second.
MAX_VARIANT_OPTIONS = 1_000
#: Most names one computed wildcard name (``__colors_{a|b}__``) may stand for.
_MAX_WILDCARD_NAMES = 1_000
#: How many wildcard names an error lists before "and N more".
_SHOWN_NAMES = 20

#: Builds the exception raised for a problem (the job file reader adds file and key).
Fail = Callable[[str], Exception]
_Variables = dict[str, Command]
#: The wildcards being expanded, outermost first, to name where a problem is and find loops.
_Chain = tuple[str, ...]


@contextmanager
def _quiet_parser() -> Iterator[None]:
    # pyparsing 3.3 deprecated names the dynamicprompts grammar still uses; the warning fires
    # from dynamicprompts.parser when it builds its (cached) grammar. Silence exactly those
    # DeprecationWarnings, here only; catch_warnings is process-wide while it lasts, so this
    # is for the single-threaded planner, not for concurrent callers.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning,
                                module=r"dynamicprompts\.parser\.")
        yield


def expand_prompts(template: str, *, mode: PromptMode, seed: int, wildcard_dir: Path | None,
                   fail: Fail, limit: int = MAX_PROMPTS) -> list[str]:
    """The prompts ``template`` stands for.

    ``mode="combinatorial"``: every expansion, deduplicated, in dynamicprompts' order.
    ``mode=N``: N draws, reproducible from ``seed``. A template without syntax gives itself
    (N times in random mode). ``fail(problem)`` builds the exception raised on a bad template,
    a missing wildcard, or more than ``limit`` prompts.
    """
    if isinstance(mode, bool) or not (mode == "combinatorial" or isinstance(mode, int)):
        raise fail(f"prompt mode must be \"combinatorial\" or a number of draws, got {mode!r}")
    if isinstance(mode, int) and not 1 <= mode <= limit:
        raise fail(f"number of prompt draws must be from 1 to {limit}, got {mode}")
    if is_literal(template):
        return [template] if mode == "combinatorial" else [template] * mode
    manager = _manager(wildcard_dir)
    with _quiet_parser():
        command = _parse(template, fail)
        _WildcardCheck(manager, wildcard_dir, fail).walk(command, {}, ())
        method = SamplingMethod.COMBINATORIAL if mode == "combinatorial" else SamplingMethod.RANDOM
        context = SamplingContext(default_sampling_method=method, wildcard_manager=manager,
                                  rand=random.Random(seed))
        if mode == "combinatorial":
            prompts = _sampled(context, command, None, template, fail)
            return _all_distinct(prompts, template, limit, fail)
        return list(_sampled(context, command, mode, template, fail))


def check_wildcards(template: str, wildcard_dir: Path | None, fail: Fail) -> None:
    """Raise ``fail(...)`` if ``template`` does not parse, or uses a wildcard (also one nested in a
    wildcard file) that the folder lacks, a wildcard that refers to itself, or an unset variable.
    """
    if not template:
        return
    with _quiet_parser():
        command = _parse(template, fail)
        _WildcardCheck(_manager(wildcard_dir), wildcard_dir, fail).walk(command, {}, ())


def _manager(wildcard_dir: Path | None) -> WildcardManager:
    # A folder that is not there gives an empty manager; the check then names the folder.
    exists = wildcard_dir is not None and Path(wildcard_dir).is_dir()
    manager = WildcardManager(Path(wildcard_dir) if exists else None)
    manager.sort_wildcards = False  # keep each file's order (see the module docstring)
    return manager


def _parse(template: str, fail: Fail) -> Command:
    _check_variant_sizes(template, fail)
    try:
        return parse(template)
    except Exception as exc:  # pyparsing's ParseException, or dynamicprompts' ValueError
        raise fail(f"cannot parse prompt {_short(template)}: {_reason(exc)}; check for an "
                   "unclosed { or __, or a lone $") from None


def _check_variant_sizes(template: str, fail: Fail) -> None:
    """Refuse a ``{...}`` with more than :data:`MAX_VARIANT_OPTIONS` options before the parser
    spends minutes on it. Counts ``|`` at each brace's own depth, so nested variants count
    apart (dynamicprompts has no escape for braces: ``\\{`` opens a variant too)."""
    if template.count("|") < MAX_VARIANT_OPTIONS:  # nothing to count: the common case
        return
    options: list[int] = []
    for char in template:
        if char == "{":
            options.append(1)
        elif char == "|" and options:
            options[-1] += 1
        elif char == "}" and options:
            count = options.pop()
            if count > MAX_VARIANT_OPTIONS:
                raise fail(f"a {{...}} variant has {count:,} options; at most "
                           f"{MAX_VARIANT_OPTIONS:,} per variant (planning slows to minutes past "
                           "that); put them in a wildcard file, one per line, and write __name__")


def _sampled(context: SamplingContext, command: Command, count: int | None, template: str,
             fail: Fail) -> Iterator[str]:
    # Only what dynamicprompts raises while sampling is caught here, not the caller's errors.
    try:
        for result in context.sample_prompts(command, count):
            yield str(result)
    except (KeyError, ValueError, RecursionError) as exc:
        raise fail(f"cannot expand prompt {_short(template)}: {_reason(exc)}") from None
    except RuntimeError as exc:
        # dynamicprompts' own failure (a generator of it ending early: "generator raised
        # StopIteration"), e.g. enumerating {2$$__a__|__a__} in combinatorial mode.
        hint = ("; draw random prompts instead: prompts = { random = N }" if count is None
                else "")
        raise fail(f"cannot expand prompt {_short(template)}: dynamicprompts failed on it "
                   f"({_reason(exc)}){hint}") from None


def _all_distinct(prompts: Iterator[str], template: str, limit: int,
                  fail: Fail) -> list[str]:
    distinct: dict[str, None] = {}
    for prompt in prompts:
        distinct[prompt] = None
        if len(distinct) > limit:
            raise fail(f"prompt {_short(template)} expands to more than {limit} prompts; "
                       "draw a number of random prompts instead")
    return list(distinct)


class _WildcardCheck:
    """Walks a parsed template, and every wildcard file it reaches, before anything is sampled."""

    def __init__(self, manager: WildcardManager, folder: Path | None, fail: Fail) -> None:
        self.manager = manager
        self.folder = folder
        self.fail = fail
        self.done: set[str] = set()  # wildcards fully checked with no variables in scope

    def walk(self, command: Command, variables: _Variables, chain: _Chain) -> None:
        if isinstance(command, SequenceCommand):
            # dynamicprompts sets a sequence's variables before sampling any of its tokens, so
            # "${who} ... ${who=cat}" is valid: collect them all first.
            assigned = [t for t in command.tokens if isinstance(t, VariableAssignmentCommand)]
            for token in assigned:
                if token.overwrite or token.name not in variables:
                    variables = {**variables, token.name: token.value}
            for token in command.tokens:
                if isinstance(token, VariableAssignmentCommand):
                    token = token.value
                self.walk(token, variables, chain)
        elif isinstance(command, VariantCommand):
            for option in command.variants:
                self.walk(option.value, variables, chain)
        elif isinstance(command, WrapCommand):
            self.walk(command.wrapper, variables, chain)
            self.walk(command.inner, variables, chain)
        elif isinstance(command, VariableAssignmentCommand):
            self.walk(command.value, variables, chain)
        elif isinstance(command, VariableAccessCommand):
            if command.default is not None:
                self.walk(command.default, variables, chain)
            elif command.name not in variables:
                raise self.fail(f"variable ${{{command.name}}} is used but never set"
                                f"{_where(chain)}")
        elif isinstance(command, WildcardCommand):
            self._wildcard(command, variables, chain)
        elif not isinstance(command, LiteralCommand):
            raise self.fail(f"unsupported prompt syntax {type(command).__name__}{_where(chain)}")

    def _wildcard(self, command: WildcardCommand, variables: _Variables, chain: _Chain) -> None:
        for value in command.variables.values():
            self.walk(value, variables, chain)
        inner = {**variables, **command.variables}
        for name in self._names(command, variables, chain):
            if name in chain:
                loop = " -> ".join(_wrap(n) for n in (*chain, name))
                raise self.fail(f"wildcard {_wrap(name)} refers to itself ({loop}); a wildcard "
                                "file must not use itself, directly or through others")
            if not inner and name in self.done:
                continue
            values = self.manager.get_values(name)
            if not values:
                raise self.fail(self._missing(name, chain))
            for text in values.string_values:
                if self.manager.wildcard_wrap in text:  # no wrap, no wildcard inside: skip parsing
                    where = f" (a line of {_wrap(name)})"
                    line = _parse(text, lambda problem: self.fail(problem + where))
                    self.walk(line, inner, (*chain, name))
            if not inner:
                self.done.add(name)

    def _names(self, command: WildcardCommand, variables: _Variables, chain: _Chain) -> list[str]:
        if isinstance(command.wildcard, str):
            return [command.wildcard]
        # A computed name (__colors_{a|b}__, __${kind}__): every name it can take must exist.
        self.walk(command.wildcard, variables, chain)
        context = SamplingContext(default_sampling_method=SamplingMethod.COMBINATORIAL,
                                  wildcard_manager=self.manager, variables=variables)
        try:
            results = islice(context.sample_prompts(command.wildcard), _MAX_WILDCARD_NAMES)
            return list(dict.fromkeys(str(r) for r in results))
        except (KeyError, ValueError, RecursionError) as exc:
            raise self.fail(f"cannot work out a wildcard name{_where(chain)}: "
                            f"{_reason(exc)}") from None

    def _missing(self, name: str, chain: _Chain) -> str:
        wildcard = f"wildcard {_wrap(name)}{_where(chain)}"
        if self.folder is None:
            return f"{wildcard} is used but no wildcard folder is set"
        if not Path(self.folder).is_dir():
            return f"{wildcard} is used but the wildcard folder {self.folder} does not exist"
        if list(self.manager.match_collections(name)):
            return f"{wildcard} has no values in {self.folder} (its file is empty or only comments)"
        names = sorted(self.manager.get_collection_names())
        shown = ", ".join(_wrap(n) for n in names[:_SHOWN_NAMES]) or "none"
        if len(names) > _SHOWN_NAMES:
            shown += f" and {len(names) - _SHOWN_NAMES} more"
        return f"{wildcard} not found in {self.folder}; available: {shown}"


def _wrap(name: str) -> str:
    return f"__{name}__"


def _where(chain: _Chain) -> str:
    return f" (used in {_wrap(chain[-1])})" if chain else ""


def _short(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _reason(exc: BaseException) -> str:
    # KeyError's str() is the repr of its argument; every message here stays on one line.
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(text.split())
