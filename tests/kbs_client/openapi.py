"""Trustee's OpenAPI document (tests/vectors/kbs/kbs.yaml) as a validator of KBS answers.

Only where the document is not stale (tests/vectors/kbs/MANIFEST.md, the README's "Known
gaps"): the Challenge, the attestation token answer, the JWE answer's members and
ErrorInformation. The document types ``Challenge.extra-params`` as an object, which Trustee
itself does not send (``""``) but keybroker does; it describes the resource answer as
``application/jwe`` and lists 403/404 where Trustee answers 401, and its token payload is a
legacy one: none of that is checked here.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

KBS_YAML = Path(__file__).parents[1] / "vectors" / "kbs" / "kbs.yaml"
_URI = "urn:trustee:kbs.yaml"


@cache
def _document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(KBS_YAML.read_text())
    return document


@cache
def _registry() -> Registry:
    return Registry().with_resource(_URI, Resource.from_contents(_document(), DRAFT202012))


def validate(schema: str, instance: Any) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``instance`` is a ``schema`` (a name
    under ``components/schemas``)."""
    if schema not in _document()["components"]["schemas"]:
        raise KeyError(schema)
    validator = Draft202012Validator(
        {"$ref": f"{_URI}#/components/schemas/{schema}"}, registry=_registry()
    )
    validator.validate(instance)


def response_schema(path: str, method: str, status: int) -> str | None:
    """The schema name the document gives the JSON answer of ``method path`` with
    ``status`` (None when it gives none)."""
    operation = _document()["paths"][path][method.lower()]
    answer = operation["responses"].get(status) or operation["responses"].get(str(status))
    if answer is None or "content" not in answer:
        return None
    for media in answer["content"].values():
        reference = media.get("schema", {}).get("$ref", "")
        if reference:
            return str(reference.rsplit("/", 1)[1])
    return None
