"""Checking AWS Signature Version 4 on a received request, with botocore's own signer.

The signature is recomputed from what arrived (method, the raw path and query, the headers
named in `SignedHeaders`, the body) with the secret of the access key it names, at the
`X-Amz-Date` it carries, for the region and service in its credential scope.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

MAX_SKEW = dt.timedelta(minutes=15)
_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, ?SignedHeaders=(?P<signed>[a-z0-9;-]+), ?"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)


class SignatureError(Exception):
    """A request whose signature does not hold; `code` is AWS's error type."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def verify(
    *,
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    secrets: dict[str, str],
    service: str,
    now: dt.datetime | None = None,
) -> str:
    """The region of a correctly signed request; raises `SignatureError` otherwise.

    `url` is the URL as sent (percent-encoding kept); `headers` have lower-case names.
    """
    match = _AUTHORIZATION.match(headers.get("authorization", ""))
    if match is None:
        raise SignatureError("IncompleteSignatureException", "Authorization header is malformed")
    secret = secrets.get(match["key"])
    if secret is None:
        raise SignatureError(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    if match["service"] != service:
        raise SignatureError(
            "InvalidSignatureException",
            f"Credential should be scoped to correct service: '{service}'.",
        )
    stamp = headers.get("x-amz-date", "")
    try:
        signed_at = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise SignatureError("IncompleteSignatureException", "X-Amz-Date is missing") from None
    if abs((now or dt.datetime.now(dt.UTC)) - signed_at) > MAX_SKEW:
        raise SignatureError("InvalidSignatureException", "Signature expired: " + stamp)
    names = match["signed"].split(";")
    if "host" not in names or any(name not in headers for name in names):
        raise SignatureError("IncompleteSignatureException", "a signed header is missing")
    request = AWSRequest(method=method, url=url, data=body, headers={n: headers[n] for n in names})
    request.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(match["key"], secret), service, match["region"])
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if match["date"] != stamp[:8] or not hmac.compare_digest(expected, match["signature"]):
        raise SignatureError(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method.",
        )
    return match["region"]
