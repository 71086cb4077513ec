"""Reading policy files: strict YAML (or JSON) into JSON values, with the position of each.

The YAML dialect is deliberately strict, so that what a reviewer reads is what the broker
evaluates:

* safe loading only (no Python tags); one document per file; YAML aliases (``*name``) are
  refused and merge keys (``<<``) are unknown keys; duplicate keys are errors;
* YAML 1.2 scalars: only ``true``/``false`` are booleans (``yes``, ``no``, ``on`` are
  strings), integers are decimal, ``0x`` hex or ``0o`` octal (``010`` is ten), and dates stay
  strings. A hex value made only of digits must be quoted; the schema check says so.

JSON files (``.json``) are parsed as strict JSON, then positioned with the same reader.
Every problem carries the file, line, column and JSONPath that is wrong.

Whatever the syntax, the values of a policy document are bounded, so that no text reaches
the loader's recursion, the canonical form or an error message as anything but a
:class:`PolicyError` (docs/reliability.md):

* nesting at most :data:`MAX_NESTING` levels (a policy's deepest legitimate nesting, a
  condition inside conditions, is far less; deeper documents would exhaust the recursion
  of the YAML composer, the JSON decoder or the schema check);
* numbers are integers of at most 64 bits: nothing in a policy is fractional, a float
  cannot enter the canonical form (RFC 8785 here carries none), and no claim is wider;
* text is Unicode scalar values: a lone surrogate (``"\\ud800"``) has no UTF-8 form, so
  it could not be stored or hashed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from broker.errors import PolicyError
from broker.policy.model import jsonpath

MAX_DOCUMENT_BYTES = 1 << 20
MAX_NESTING = 64
"""Deepest nesting of mappings and lists in a policy document (the top level is 1)."""
MAX_INTEGER = (1 << 64) - 1
"""Integers in a policy lie in [-MAX_INTEGER, MAX_INTEGER]."""
_MAX_INTEGER_DIGITS = 40
"""Longer integer text is refused before conversion (Python refuses decimal text past
4,300 digits with a ValueError; hex and octal are unbounded and would be refused later)."""

PathParts = tuple[str | int, ...]
Position = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int | None
    column: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "message": self.message,
        }


def policy_error(problems: Iterable[Problem]) -> PolicyError:
    """One error listing every problem, in file and line order."""
    ordered = sorted(set(problems), key=lambda p: (p.file, p.line or 0, p.column or 0, p.path))
    return PolicyError("\n".join(map(str, ordered)), [p.as_dict() for p in ordered])


@dataclass
class SourceMap:
    """Where each value and each mapping key of a document was written."""

    source: str
    values: dict[PathParts, Position] = field(default_factory=dict)
    keys: dict[PathParts, Position] = field(default_factory=dict)

    def position(self, parts: PathParts, *, key: bool = False) -> Position | None:
        """The key's (or value's) position at ``parts``, else its nearest ancestor's."""
        while True:
            found = (self.keys.get(parts) if key else None) or self.values.get(parts)
            if found is not None or not parts:
                return found
            parts = parts[:-1]

    def line_of(self, parts: PathParts) -> int | None:
        position = self.position(parts, key=True)
        return None if position is None else position[0]

    def problem(self, parts: PathParts, message: str, *, key: bool = False) -> Problem:
        line, column = self.position(parts, key=key) or (None, None)
        return Problem(self.source, line, column, jsonpath(parts), message)


class _Loader(yaml.SafeLoader):
    """SafeLoader used to compose nodes only; scalars resolve with YAML 1.2 core rules.

    Composing recurses once per level of nesting, so the depth is bounded here, before the
    interpreter's recursion limit is (:data:`MAX_NESTING`). Flow collections are bounded
    earlier, by the scanner: every ``[`` or ``{`` may start a simple key, so PyYAML scans
    ahead up to 1,024 characters of them with work per character proportional to the depth
    (measured: about 2.5 s for 900 ``[``)."""

    depth = 0

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:  # noqa: N803 - PyYAML's name
        if self.flow_level >= MAX_NESTING:
            raise yaml.scanner.ScannerError(
                None, None, f"nested deeper than {MAX_NESTING} levels", self.get_mark()
            )
        super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None,
                None,
                "YAML aliases (*name) are not allowed: write the value out",
                event.start_mark,
            )
        if self.depth >= MAX_NESTING and self.check_event(
            yaml.SequenceStartEvent, yaml.MappingStartEvent
        ):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, f"nested deeper than {MAX_NESTING} levels", event.start_mark
            )
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


_Loader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^(?:[-+]?[0-9]+|0x[0-9a-fA-F]+|0o[0-7]+)$", "-+0123456789"),
    ("float", r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$", "-+0123456789."),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
):
    _Loader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), list(_first))

_STR, _INT, _BOOL, _NULL, _FLOAT, _MAP, _SEQ = (
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "bool", "null", "float", "map", "seq")
)


class _Reader:
    """Turns a YAML node tree into JSON values, filling a :class:`SourceMap`."""

    def __init__(self, source: str) -> None:
        self.map = SourceMap(source)
        self.problems: list[Problem] = []

    def read(self, node: Node, path: PathParts) -> Any:
        self.map.values[path] = _position(node)
        if isinstance(node, MappingNode) and node.tag == _MAP:
            return self._mapping(node, path)
        if isinstance(node, SequenceNode) and node.tag == _SEQ:
            return [self.read(item, (*path, i)) for i, item in enumerate(node.value)]
        if isinstance(node, ScalarNode):
            return self._scalar(node, path)
        self.problems.append(self.map.problem(path, f"YAML tag {node.tag} is not allowed"))
        return None

    def _mapping(self, node: MappingNode, path: PathParts) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.problems.append(self.map.problem(path, "a mapping key must be a string"))
                continue
            key = str(key_node.value)
            child = (*path, key)
            if key in out:
                first = self.map.keys[child][0]
                line, column = _position(key_node)
                message = f"duplicate key '{key}' (first at line {first})"
                self.problems.append(
                    Problem(self.map.source, line, column, jsonpath(child), message)
                )
                continue
            self.map.keys[child] = _position(key_node)
            out[key] = self.read(value_node, child)
        return out

    def _scalar(self, node: ScalarNode, path: PathParts) -> Any:
        convert = _SCALARS.get(node.tag)
        if convert is None:
            self.problems.append(self.map.problem(path, f"YAML tag {node.tag} is not allowed"))
            return None
        try:
            return convert(str(node.value))
        except ValueError as exc:  # an explicit !!int or !!float tag on text that is neither
            self.problems.append(self.map.problem(path, str(exc)))
            return None


def _int(text: str) -> int:
    """A YAML 1.2 core integer (the resolver's pattern, or text tagged ``!!int``)."""
    digits = text.lstrip("+-")
    if len(digits) > _MAX_INTEGER_DIGITS:
        raise ValueError(f"integer of {len(digits)} digits: integers here fit in 64 bits")
    try:
        if text.startswith("0x"):
            return int(text[2:], 16)
        if text.startswith("0o"):
            return int(text[2:], 8)
        return int(text, 10)
    except ValueError:
        raise ValueError(f"{_excerpt(text)} is not an integer") from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{_excerpt(text)} is not a number") from None


def _excerpt(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


_SCALARS: dict[str, Callable[[str], Any]] = {
    _STR: str,
    _BOOL: lambda text: text.lower() == "true",
    _NULL: lambda text: None,
    _INT: _int,
    _FLOAT: _float,
}


def value_problems(doc: Any, where: SourceMap) -> list[Problem]:
    """What makes ``doc`` unfit for a policy whatever its schema (the module docstring):
    nesting beyond :data:`MAX_NESTING`, floats, integers beyond 64 bits, lone surrogates.

    Iterative, so that it is safe on any document a parser returned."""
    problems: list[Problem] = []
    stack: list[tuple[Any, PathParts]] = [(doc, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict | list):
            if len(path) >= MAX_NESTING:
                problems.append(where.problem(path, f"nested deeper than {MAX_NESTING} levels"))
                continue
            if isinstance(value, dict):
                for key, item in value.items():
                    if _has_surrogate(key):
                        problems.append(where.problem(path, _SURROGATE))
                    else:
                        stack.append((item, (*path, key)))
            else:
                stack.extend((item, (*path, index)) for index, item in enumerate(value))
        elif isinstance(value, float):
            problems.append(where.problem(path, f"{value!r}: numbers here are integers"))
        elif isinstance(value, int) and not isinstance(value, bool):
            if not -MAX_INTEGER <= value <= MAX_INTEGER:
                problems.append(where.problem(path, "integer beyond 64 bits"))
        elif isinstance(value, str) and _has_surrogate(value):
            problems.append(where.problem(path, _SURROGATE))
    return problems


_SURROGATE = "text holds a lone surrogate (not a Unicode scalar value, so not UTF-8)"


_SURROGATES = re.compile("[\ud800-\udfff]")


def _has_surrogate(text: str) -> bool:
    return not text.isascii() and _SURROGATES.search(text) is not None


def nesting_error(doc: Any, source: str) -> PolicyError | None:
    """The error of a document nested deeper than :data:`MAX_NESTING`, else None
    (iterative: for callers that must serialise a parsed value before loading it)."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_NESTING:
                message = f"nested deeper than {MAX_NESTING} levels"
                return policy_error([Problem(source, None, None, "$", message)])
            items = value.values() if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)
    return None


def _position(node: Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _yaml_problem(source: str, exc: yaml.YAMLError, text: str) -> Problem:
    if isinstance(exc, yaml.reader.ReaderError):  # carries a character offset, not a mark
        before = text[: exc.position]
        line, column = before.count("\n") + 1, exc.position - before.rfind("\n")
        message = f"YAML: character U+{exc.character:04X} is not allowed"
        return Problem(source, line, column, "$", message)
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"YAML: {context}, {problem}" if context else f"YAML: {problem}"
    if mark is None:
        return Problem(source, None, None, "$", message)
    return Problem(source, mark.line + 1, mark.column + 1, "$", message)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key '{key}'")
        out[key] = value
    return out


def _compose(text: str) -> Node | None:
    loader = _Loader(text)  # the reader already refuses unprintable characters here
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def parse_document(text: str, source: str, *, is_json: bool = False) -> tuple[Any, SourceMap]:
    """Parse ``text`` into a JSON value and the positions of its parts."""
    if len(text) > MAX_DOCUMENT_BYTES:
        raise policy_error([Problem(source, None, None, "$", "larger than 1 MiB")])
    if is_json:
        return _parse_json(text, source)
    try:
        node = _compose(text)
    except yaml.YAMLError as exc:
        raise policy_error([_yaml_problem(source, exc, text)]) from None
    if node is None:
        raise policy_error([Problem(source, 1, 1, "$", "the document is empty")])
    reader = _Reader(source)
    doc = reader.read(node, ())
    problems = reader.problems or value_problems(doc, reader.map)
    if problems:
        raise policy_error(problems)
    return doc, reader.map


def _parse_json(text: str, source: str) -> tuple[Any, SourceMap]:
    """Strict JSON: the json module's value stands; PyYAML only finds where its parts are
    (it reads JSON as YAML, but leaves an escaped surrogate pair as two lone surrogates)."""
    try:
        doc = json.loads(text, object_pairs_hook=_reject_duplicates)
    except json.JSONDecodeError as exc:
        problem = Problem(source, exc.lineno, exc.colno, "$", f"JSON: {exc.msg}")
        raise policy_error([problem]) from None
    except RecursionError:  # the json module's depth is bounded by the caller's stack
        message = f"nested deeper than {MAX_NESTING} levels"
        raise policy_error([Problem(source, None, None, "$", message)]) from None
    except ValueError as exc:  # a duplicate key, or an integer of more than 4,300 digits
        raise policy_error([Problem(source, None, None, "$", f"JSON: {exc}")]) from None
    where = SourceMap(source)
    if nesting_error(doc, source) is None:  # else PyYAML would refuse it: no positions
        try:
            node = _compose(text)
        except yaml.YAMLError:
            node = None  # valid JSON that PyYAML cannot position: keep it, without lines
        if node is not None:
            reader = _Reader(source)
            reader.read(node, ())
            where = reader.map
    problems = value_problems(doc, where)
    if problems:
        raise policy_error(problems)
    return doc, where


def read_source(path: Path) -> tuple[Any, SourceMap]:
    """Read and parse the file at ``path`` (JSON when it ends in ``.json``)."""
    return parse_document(read_text(path), str(path), is_json=is_json_name(str(path)))


def is_json_name(name: str) -> bool:
    return name.lower().endswith(".json")


def read_text(path: Path) -> str:
    """The UTF-8 text of the file at ``path``, at most 1 MiB; :class:`PolicyError` if not."""
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise policy_error(
            [Problem(source, None, None, "$", f"cannot read: {exc.strerror}")]
        ) from None
    except ValueError:  # a NUL in the path (a reference named in a document)
        raise policy_error(
            [Problem(source, None, None, "$", "cannot read: NUL in the path")]
        ) from None
    if len(data) > MAX_DOCUMENT_BYTES:
        raise policy_error([Problem(source, None, None, "$", "larger than 1 MiB")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problem = Problem(source, None, None, "$", f"not UTF-8 (byte {exc.start})")
        raise policy_error([problem]) from None
    return text
