"""Policy documents, YAML and JSON: file bytes -> strict reader -> schema -> references ->
model -> compiled form and digest (``broker/policy/source.py``, ``loader.py``, ``model.py``).

The first byte chooses the file's suffix (even: ``.yaml``, odd: ``.json``); the rest is the
file. The policy sits in a directory that also holds a valid reference file
(``reference/example-images.yaml``), so ``references`` entries resolve as they do for
``policies/``. The admin API's publish path (a JSON body, re-serialised, then loaded as JSON)
is driven by the request-body harness.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from broker.policy.loader import load_policy
from fuzz.engine import ROOT, Harness, Target

POLICIES = ROOT / "policies"


def setup() -> Target:
    directory = Path(tempfile.mkdtemp(prefix="keybroker-fuzz-policy-"))
    shutil.copytree(POLICIES / "reference", directory / "reference")
    files = (directory / "policy.yaml", directory / "policy.json")

    def target(data: bytes) -> None:
        if not data:
            return
        path = files[data[0] & 1]
        path.write_bytes(data[1:])
        load_policy(path)

    return target


def seeds() -> Iterator[tuple[str, bytes]]:
    for path in sorted(POLICIES.glob("*.yaml")):
        yield path.stem, b"\x00" + path.read_bytes()
    data = ROOT / "tests" / "unit" / "policy" / "data"
    for path in sorted(data.glob("*.json")):
        yield path.stem, b"\x01" + path.read_bytes()


HARNESS = Harness("policy", setup, seeds, __doc__ or "", max_len=1 << 15)
