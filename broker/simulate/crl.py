"""CRL shapes that pyca/cryptography's builder will not write, for the kits' negative tests.

RFC 5280 §5.1.2.5 requires nextUpdate of a conforming CRL issuer, but the ASN.1 keeps it
OPTIONAL (X.509 ``TBSCertList``), and a verifier must decide what such a CRL means; the
builder always writes one, so the kits remove it from the DER and sign again.
"""

from __future__ import annotations

from collections.abc import Callable

from broker.evidence import der

_TIME_TAGS = (0x17, 0x18)  # UTCTime, GeneralizedTime
_BIT_STRING = 0x03


def without_next_update(crl: bytes, sign: Callable[[bytes], bytes]) -> bytes:
    """``crl`` (DER) without its nextUpdate, its tbsCertList signed again with ``sign``
    (which returns the signature value for the CRL's own signatureAlgorithm)."""
    tbs, algorithm, _ = der.children(der.parse_one(crl, der.TAG_SEQUENCE, "CRL"), "CRL")
    fields = list(der.children(tbs.value, "tbsCertList"))
    # version?, signature, issuer, thisUpdate, nextUpdate?, ...: the only Times at this level.
    _this_update, next_update = (i for i, field in enumerate(fields) if field.tag in _TIME_TAGS)
    del fields[next_update]
    unsigned = der.encode_tlv(
        der.TAG_SEQUENCE, b"".join(der.encode_tlv(f.tag, f.value) for f in fields)
    )
    signature = der.encode_tlv(_BIT_STRING, b"\x00" + sign(unsigned))
    body = unsigned + der.encode_tlv(algorithm.tag, algorithm.value) + signature
    return der.encode_tlv(der.TAG_SEQUENCE, body)
