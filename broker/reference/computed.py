"""What a computation yields: claim values, with the provenance that explains them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from broker import __version__
from broker.errors import KeybrokerError
from broker.policy.provenance import Artifact, ParameterValue, Provenance, Tool
from broker.timeutil import iso, utcnow

#: How keybroker names itself as the program that ran a measuring library.
KEYBROKER = f"keybroker {__version__}"
#: Larger inputs are refused rather than read: firmware is a few MiB, an enclave image a few
#: hundred; nothing a reviewer pins is bigger.
MAX_ARTIFACT_BYTES = 2 * 1024**3


class ArtifactInvalid(KeybrokerError):
    """An input file is not what its format requires (bad magic, truncated, inconsistent)."""

    type = "artifact-invalid"


@dataclass(frozen=True, slots=True)
class Computed:
    tee: str
    values: Mapping[str, str]
    """Claim path -> lowercase hex, as a reference entry of ``tee`` names them."""
    provenance: Provenance


def read_artifact(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_ARTIFACT_BYTES:
            raise ArtifactInvalid(f"{path}: larger than {MAX_ARTIFACT_BYTES} bytes")
        return path.read_bytes()
    except OSError as exc:
        raise ArtifactInvalid(f"{path}: cannot read: {exc.strerror}") from None


def provenance(
    artifacts: Sequence[tuple[Path, bytes]],
    tool: Tool,
    parameters: Sequence[tuple[str, ParameterValue]],
    source: str | None,
    now: datetime | None = None,
) -> Provenance:
    """Provenance naming each artifact by its file name and digests, computed ``now``."""
    at = (now or utcnow()).astimezone(UTC)
    return Provenance(
        artifacts=tuple(Artifact.of(path.name, data) for path, data in artifacts),
        tool=tool,
        parameters=tuple(parameters),
        computed_at=iso(at, zulu=True, timespec="seconds"),
        source=source,
    )
