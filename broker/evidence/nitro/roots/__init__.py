"""The pinned AWS Nitro Enclaves root (G1) and where it comes from.

AWS publishes the root of the Nitro Attestation PKI for the commercial partitions as
``root.pem`` inside https://aws-nitro-enclaves.amazonaws.com/AWS_NitroEnclaves_Root-G1.zip and,
in the Nitro Enclaves User Guide ("Verifying the root of trust",
https://docs.aws.amazon.com/enclaves/latest/user/verify-root.html), the SHA-256 fingerprint of
that certificate (``64:1A:03:21:...:79:BB:5B``) and the SHA-256 of the zip file. The copy here
is byte-identical to ``tests/vectors/nitro/evervault-docs/nitro.pem`` (evervault
attestation-doc-validation @084ba280, itself taken from AWS's zip) and to ``cabundle[0]`` of every
real document in the vectors; its DER fingerprint equals the one AWS publishes, which is what
``load_pinned_root`` and ``tests/unit/nitro/test_roots.py`` check.

Subject and issuer ``CN=aws.nitro-enclaves, OU=AWS, O=Amazon, C=US``; EC P-384,
ecdsa-with-SHA384; valid 2019-10-28T13:28:05Z to 2049-10-28T14:28:05Z.
"""

from __future__ import annotations

#: Package that holds the PEM file (for ``importlib.resources``).
PACKAGE = __name__

#: The root's file in this package.
AWS_NITRO_ROOT_G1_FILE = "aws-nitro-enclaves-root-g1.pem"

#: The name chains ending in this root carry in ``Claims.signer.root``.
AWS_NITRO_ROOT_G1_NAME = "aws-nitro-enclaves-root-g1"

#: SHA-256 of the certificate's DER encoding, as AWS publishes it (verify-root.html).
AWS_NITRO_ROOT_G1_SHA256 = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"

#: SHA-256 of the published zip file, as AWS publishes it; recorded so that a maintainer who
#: downloads the zip again can check it before comparing ``root.pem`` with our copy.
AWS_NITRO_ROOT_G1_ZIP_SHA256 = "8cf60e2b2efca96c6a9e71e851d00c1b6991cc09eadbe64a6a1d1b1eb9faff7c"

AWS_NITRO_ROOT_G1_URL = "https://aws-nitro-enclaves.amazonaws.com/AWS_NitroEnclaves_Root-G1.zip"

#: When the copy here was taken (from the vectors; the zip itself was not reachable offline).
AWS_NITRO_ROOT_G1_FETCHED = "2026-11-26"
