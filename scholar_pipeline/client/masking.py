"""Secrets out of anything shown: URLs in metadata, logs and error messages."""

from __future__ import annotations

import re

SECRET_PARAMS = ("api_key", "apikey", "api-key", "key", "token", "access_token")
_SECRET_IN_QUERY = re.compile(r"(?i)([?&](?:%s)=)[^&#\s]*" % "|".join(re.escape(p) for p in SECRET_PARAMS))


def mask_url(url: str) -> str:
    """`...?api_key=abc&q=x` to `...?api_key=***&q=x`."""
    return _SECRET_IN_QUERY.sub(r"\1***", str(url))


def redact(text: str, secrets: list[str]) -> str:
    """Replace every given secret value in `text` (for messages that quote bodies or URLs)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return mask_url(text)
