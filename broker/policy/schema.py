"""The published JSON Schema (``schema.json``, draft 2020-12) and readable schema errors.

``schema.json`` in this package is the one source of truth for the structure of policy and
reference documents; ``policies/schema.json`` is a copy that a test keeps identical. Where
jsonschema's own messages are unclear, they are rewritten: unknown keys are named with a
suggestion, and the schema's ``description`` says what a value should look like.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from importlib import resources
from typing import Any, cast

import jsonschema

from broker.policy.source import PathParts, Problem, SourceMap, policy_error


def _python_patterns(node: Any) -> Any:
    r"""``node`` with every ``pattern`` and ``patternProperties`` regex as Python must write it.

    JSON Schema patterns are ECMA-262 regexes (draft 2020-12 §6.4), in which ``$`` without
    the multiline flag is the end of the input; jsonschema runs them with Python's ``re``,
    whose ``$`` also matches before a final newline, so ``"my-policy\n"`` would pass
    ``^[a-z0-9][a-z0-9._-]{0,63}$``. The published schema keeps ``$``; the validator gets
    ``\Z``, the end of the input in Python.
    """
    if isinstance(node, list):
        return [_python_patterns(item) for item in node]
    if not isinstance(node, dict):
        return node
    copy: dict[str, Any] = {}
    for key, value in node.items():
        if key == "pattern" and isinstance(value, str):
            copy[key] = python_pattern(value)
        elif key == "patternProperties" and isinstance(value, dict):
            copy[key] = {python_pattern(k): _python_patterns(v) for k, v in value.items()}
        else:
            copy[key] = _python_patterns(value)
    return copy


def python_pattern(pattern: str) -> str:
    r"""An ECMA-262 ``pattern`` as a Python regex: each ``$`` anchor (unescaped, outside a
    character class) becomes ``\Z``. The rest of the syntax our schema uses is common to
    both."""
    out = []
    in_class = escaped = False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "$":
            out.append("\\Z")
            continue
        out.append(char)
    return "".join(out)


#: The published schema, read at import.
SCHEMA: dict[str, Any] = json.loads(
    resources.files("broker.policy").joinpath("schema.json").read_text("utf-8")
)
_VALIDATOR = jsonschema.Draft202012Validator(_python_patterns(SCHEMA))


def validate(doc: Any, where: SourceMap) -> dict[str, Any]:
    """Return ``doc`` if it is schema-valid; else raise :class:`PolicyError` listing every
    violation."""
    problems = [p for error in _VALIDATOR.iter_errors(doc) for p in _explain(error, where)]
    if problems:
        raise policy_error(problems)
    return cast(dict[str, Any], doc)  # the schema's top level is type: object


def _explain(error: jsonschema.ValidationError, where: SourceMap) -> Iterator[Problem]:
    path: PathParts = tuple(error.absolute_path)
    instance, kind, value = error.instance, error.validator, error.validator_value
    subschema = error.schema if isinstance(error.schema, dict) else {}
    description = subschema.get("description")
    if kind == "additionalProperties" and isinstance(instance, dict):
        allowed = sorted(subschema.get("properties", {}))
        patterns = [re.compile(p) for p in subschema.get("patternProperties", {})]
        for key in instance:
            if key in allowed or any(p.search(key) for p in patterns):
                continue
            listed = ", ".join(allowed) or "none"
            message = f"unknown key '{key}'{_suggest(key, allowed)}; allowed here: {listed}"
            yield where.problem((*path, key), message, key=True)
    elif kind == "required" and isinstance(instance, dict):
        for key in value:
            if key not in instance:
                yield where.problem(path, f"missing key '{key}'")
    elif "propertyNames" in error.schema_path:
        # A bad mapping key: jsonschema reports the key as the instance, at the mapping's path.
        name = str(instance)
        if kind == "enum":
            known = [str(v) for v in value]
            listed = ", ".join(known)
            message = f"'{name}' is not a known name{_suggest(name, known)}; known: {listed}"
        else:
            message = f"'{name}' is not {description}" if description else error.message
        yield where.problem((*path, name), message, key=True)
    else:
        yield where.problem(path, _message(kind, value, instance, description, error.message))


def _message(kind: str, value: Any, instance: Any, description: str | None, default: str) -> str:
    found = _json_text(instance)
    if kind == "type":
        wanted = " or ".join(value) if isinstance(value, list) else str(value)
        if description:
            wanted += f" ({description})"
        hint = ""
        if isinstance(instance, int) and description and "hex" in description:
            hint = "; quote hex values made only of digits: YAML reads them as numbers"
        elif value == "boolean" and str(instance).lower() in _YAML11_BOOLEANS:
            hint = "; write true or false: yes, no, on and off are strings here"
        found = found if instance is None else f"{_json_kind(instance)} {found}"
        return f"expected {wanted}, found {found}{hint}"
    if kind == "enum":
        hint = _suggest(str(instance), [str(v) for v in value])
        return f"{found} is not one of {', '.join(map(_json_text, value))}{hint}"
    if kind == "const":
        return f"must be {_json_text(value)}, found {found}"
    if kind == "pattern":
        return f"{found} is not {description}" if description else default
    if kind in ("oneOf", "anyOf") and description:
        keys = f"; found keys: {', '.join(instance)}" if isinstance(instance, dict) else ""
        return f"expected {description}{keys}"
    return default


_YAML11_BOOLEANS = frozenset({"yes", "no", "on", "off", "y", "n"})


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return "list" if isinstance(value, list) else "mapping"


def _json_text(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."
