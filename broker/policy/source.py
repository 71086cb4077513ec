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
    """SafeLoader used to compose nodes only; scalars resolve with YAML 1.2 core rules."""

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None,
                None,
                "YAML aliases (*name) are not allowed: write the value out",
                event.start_mark,
            )
        return super().compose_node(parent, index)


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
        return convert(str(node.value))


def _int(text: str) -> int:
    if text.startswith("0x"):
        return int(text[2:], 16)
    if text.startswith("0o"):
        return int(text[2:], 8)
    return int(text, 10)


_SCALARS: dict[str, Callable[[str], Any]] = {
    _STR: str,
    _BOOL: lambda text: text.lower() == "true",
    _NULL: lambda text: None,
    _INT: _int,
    _FLOAT: float,
}


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
    json_doc: Any = None
    if is_json:
        try:
            json_doc = json.loads(text, object_pairs_hook=_reject_duplicates)
        except json.JSONDecodeError as exc:
            problem = Problem(source, exc.lineno, exc.colno, "$", f"JSON: {exc.msg}")
            raise policy_error([problem]) from None
        except ValueError as exc:
            raise policy_error([Problem(source, None, None, "$", f"JSON: {exc}")]) from None
    try:
        node = _compose(text)
    except yaml.YAMLError as exc:
        if is_json:  # valid JSON that PyYAML cannot position: keep it, without lines
            return json_doc, SourceMap(source)
        raise policy_error([_yaml_problem(source, exc, text)]) from None
    if node is None:
        raise policy_error([Problem(source, 1, 1, "$", "the document is empty")])
    reader = _Reader(source)
    doc = reader.read(node, ())
    if reader.problems:
        raise policy_error(reader.problems)
    return doc, reader.map


def read_source(path: Path) -> tuple[Any, SourceMap]:
    """Read and parse the file at ``path`` (JSON when it ends in ``.json``)."""
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise policy_error(
            [Problem(source, None, None, "$", f"cannot read: {exc.strerror}")]
        ) from None
    if len(data) > MAX_DOCUMENT_BYTES:
        raise policy_error([Problem(source, None, None, "$", "larger than 1 MiB")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problem = Problem(source, None, None, "$", f"not UTF-8 (byte {exc.start})")
        raise policy_error([problem]) from None
    return parse_document(text, source, is_json=path.suffix.lower() == ".json")
