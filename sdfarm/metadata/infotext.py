"""Reading AUTOMATIC1111's ``parameters`` text (also written by Forge, SD.Next and sdfarm).

The format has no specification, only writers, so this is a small grammar for what they write::

    infotext  := prompt-lines [negative] settings [template] [negative-template]
    negative  := "Negative prompt:" text, up to the settings line (may span lines)
    settings  := item ("," item)*       -- one line, at least three items
    item      := key ":" value
    value     := JSON string "..." | balanced {...} or [...] | bare text up to the next comma
    template  := "Template:" text, up to "Negative Template:" or the end (may span lines)

Prompts keep their commas, colons and newlines: only a line that parses completely as a
settings line (followed by nothing or by a template block) ends the prompt. Pure: standard
library only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

NEGATIVE_PREFIX = "Negative prompt:"
#: Blocks that sd-dynamic-prompts appends after the settings line ("save template to
#: metadata"), unquoted and possibly over several lines.
TEMPLATE_PREFIX = "Template:"
NEGATIVE_TEMPLATE_PREFIX = "Negative Template:"
#: A1111 treats a last line with fewer items as part of the prompt.
MIN_SETTINGS_ITEMS = 3
_CLOSING = {"{": "}", "[": "]"}


@dataclass
class Infotext:
    prompt: str
    negative_prompt: str
    #: Every ``Key: value`` of the settings line, unquoted, in order.
    params: dict[str, str]
    #: sd-dynamic-prompts' ``Template:`` block: the prompt before wildcard expansion.
    template: str | None = None
    negative_template: str | None = None
    #: Where the settings line was (0-based), or ``None`` when the text has none.
    settings_line: int | None = field(default=None, compare=False)


def parse_infotext(text: str) -> Infotext:
    """Split ``text`` into prompt, negative prompt, settings and template blocks.

    Never fails: text without a settings line is all prompt (as A1111 reads it); whether the
    settings are complete is for the caller to judge.
    """
    lines = text.strip().replace("\r\n", "\n").replace("\r", "\n").split("\n")
    found = _find_settings(lines)
    if found is None:
        head, settings, tail = lines, {}, []
        at = None
    else:
        at, settings = found
        head, tail = lines[:at], lines[at + 1:]
    prompt, negative = _split_negative(head)
    template, negative_template = _templates(tail)
    return Infotext(prompt, negative, settings, template, negative_template, at)


def parse_settings_line(line: str) -> dict[str, str] | None:
    """The items of a settings line, or ``None`` when ``line`` is not one (a prompt line)."""
    items = _Scanner(line).items()
    if items is None or len(items) < MIN_SETTINGS_ITEMS:
        return None
    return dict(items)


def _find_settings(lines: list[str]) -> tuple[int, dict[str, str]] | None:
    # The last line that is a settings line and is followed only by template blocks: a prompt
    # line that happens to look like settings is never followed by "Template:".
    for i in range(len(lines) - 1, -1, -1):
        if i + 1 < len(lines) and not lines[i + 1].startswith(
                (TEMPLATE_PREFIX, NEGATIVE_TEMPLATE_PREFIX)):
            continue
        settings = parse_settings_line(lines[i])
        if settings is not None:
            return i, settings
    return None


def _split_negative(lines: list[str]) -> tuple[str, str]:
    for i, line in enumerate(lines):
        if line.startswith(NEGATIVE_PREFIX):
            first = _after_prefix(line, NEGATIVE_PREFIX)
            return "\n".join(lines[:i]), "\n".join([first, *lines[i + 1:]])
    return "\n".join(lines), ""


def _templates(lines: list[str]) -> tuple[str | None, str | None]:
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines:
        for prefix in (NEGATIVE_TEMPLATE_PREFIX, TEMPLATE_PREFIX):
            if line.startswith(prefix) and prefix not in blocks:
                current = blocks[prefix] = [_after_prefix(line, prefix)]
                break
        else:
            if current is not None:
                current.append(line)
    joined = {k: "\n".join(v) for k, v in blocks.items()}
    return joined.get(TEMPLATE_PREFIX), joined.get(NEGATIVE_TEMPLATE_PREFIX)


def _after_prefix(line: str, prefix: str) -> str:
    # Writers put one space after the colon (sd-dynamic-prompts none): drop at most one, so a
    # value that itself starts with a space survives.
    rest = line[len(prefix):]
    return rest[1:] if rest.startswith(" ") else rest


class _Scanner:
    """Scans one settings line item by item; any stray character makes it a prompt line."""

    def __init__(self, line: str) -> None:
        self.s = line
        self.i = 0

    def items(self) -> list[tuple[str, str]] | None:
        out: list[tuple[str, str]] = []
        self._spaces()
        if self.i == len(self.s):
            return None
        while True:
            key = self._key()
            if key is None:
                return None
            value = self._value()
            if value is None:
                return None
            out.append((key, value))
            self._spaces()
            if self.i == len(self.s):
                return out
            if self.s[self.i] != ",":
                return None
            self.i += 1
            self._spaces()
            if self.i == len(self.s):  # a trailing comma
                return out

    def _spaces(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t":
            self.i += 1

    def _key(self) -> str | None:
        end = self.s.find(":", self.i)
        if end < 0:
            return None
        key = self.s[self.i:end].strip()
        if not key or any(c in key for c in ',"{}[]') or not (key[0].isalnum()):
            return None
        self.i = end + 1
        self._spaces()
        return key

    def _value(self) -> str | None:
        if self.i < len(self.s) and self.s[self.i] == '"':
            return self._quoted()
        if self.i < len(self.s) and self.s[self.i] in _CLOSING:
            return self._balanced()
        end = self.s.find(",", self.i)
        end = len(self.s) if end < 0 else end
        value = self.s[self.i:end].strip()
        self.i = end
        return value

    def _quoted(self) -> str | None:
        j = self.i + 1
        while j < len(self.s):
            c = self.s[j]
            if c == "\\":
                j += 2
                continue
            if c == '"':
                raw = self.s[self.i:j + 1]
                self.i = j + 1
                try:
                    return json.loads(raw)
                except json.JSONDecodeError:
                    return raw[1:-1]  # A1111 keeps a value it cannot unquote as written
            j += 1
        return None  # unterminated: not a settings line

    def _balanced(self) -> str | None:
        # An unquoted JSON object or list (e.g. civitai's ``Hashes: {"model": "..."}``), whose
        # commas and colons belong to the value.
        stack: list[str] = []
        j = self.i
        in_string = False
        while j < len(self.s):
            c = self.s[j]
            if in_string:
                if c == "\\":
                    j += 1
                elif c == '"':
                    in_string = False
            elif c == '"':
                in_string = True
            elif c in _CLOSING:
                stack.append(_CLOSING[c])
            elif stack and c == stack[-1]:
                stack.pop()
                if not stack:
                    value = self.s[self.i:j + 1]
                    self.i = j + 1
                    return value
            j += 1
        return None
