"""Values that must never be printed: PINs, tokens, passwords, key material.

One definition serves the broker and its HSM layer: it lives in ``hsm/redact.py``, because
hsm/ holds PINs and derived keys too and imports nothing of broker/.
"""

from __future__ import annotations

from hsm.redact import Secret, SecretBytes

__all__ = ["Secret", "SecretBytes"]
