"""Where a reference entry's values came from (docs/reference-values.md).

A reviewer trusts a measurement because of how it was obtained: computed by a named tool
from named artifacts whose digests anyone can check, with the tool's parameters, at a time,
and optionally from a build whose own record (a git commit, SLSA provenance, an in-toto
attestation) a source link names. Provenance is part of the policy's canonical form, so the
digest a decision records also covers why its values were trusted. It does not change what
matches: evaluation reads only the values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ParameterValue = str | int | bool


@dataclass(frozen=True, slots=True)
class Artifact:
    """One input file, by name and the digests of its bytes."""

    name: str
    sha256: str
    sha384: str | None = None

    @classmethod
    def of(cls, name: str, data: bytes) -> Artifact:
        return cls(name, hashlib.sha256(data).hexdigest(), hashlib.sha384(data).hexdigest())

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "sha256": self.sha256}
        if self.sha384 is not None:
            doc["sha384"] = self.sha384
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Artifact:
        sha384 = doc.get("sha384")
        return cls(doc["name"], doc["sha256"].lower(), None if sha384 is None else sha384.lower())


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    version: str
    via: str | None = None
    """The program that ran the tool (``keybroker 0.1.0``) when the tool is a library."""

    def __str__(self) -> str:
        text = f"{self.name} {self.version}"
        return text if self.via is None else f"{text} (via {self.via})"

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "version": self.version}
        if self.via is not None:
            doc["via"] = self.via
        return doc


@dataclass(frozen=True, slots=True)
class Provenance:
    """Computed values carry artifacts, tool and time; copied ones at least a source."""

    artifacts: tuple[Artifact, ...] = ()
    tool: Tool | None = None
    parameters: tuple[tuple[str, ParameterValue], ...] = ()
    computed_at: str | None = None
    source: str | None = None

    def summary(self) -> str:
        """One line for ``policy check``: what, from which artifacts, when, and the source."""
        parts: list[str] = []
        if self.tool is not None:
            parts.append(f"computed by {self.tool}")
        if self.artifacts:
            files = ", ".join(f"{a.name} (sha256:{a.sha256[:16]}…)" for a in self.artifacts)
            parts.append(f"from {files}")
        if self.parameters:
            parts.append("with " + ", ".join(f"{k}={v}" for k, v in self.parameters))
        if self.computed_at is not None:
            parts.append(f"at {self.computed_at}")
        if self.source is not None:
            parts.append(f"source {self.source}")
        return "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if self.artifacts:
            doc["artifacts"] = [artifact.to_json() for artifact in self.artifacts]
        if self.tool is not None:
            doc["tool"] = self.tool.to_json()
        if self.parameters:
            doc["parameters"] = dict(self.parameters)
        if self.computed_at is not None:
            doc["computed_at"] = self.computed_at
        if self.source is not None:
            doc["source"] = self.source
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Provenance:
        tool = doc.get("tool")
        return cls(
            artifacts=tuple(Artifact.from_json(a) for a in doc.get("artifacts", ())),
            tool=None if tool is None else Tool(tool["name"], tool["version"], tool.get("via")),
            parameters=tuple(doc.get("parameters", {}).items()),
            computed_at=doc.get("computed_at"),
            source=doc.get("source"),
        )
