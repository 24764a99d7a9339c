"""Secrets out of URLs that are shown: in metadata, logs and error messages.

Credentials are added below the HTTP cache, so the URLs the pipeline handles carry none;
this is the second line of defence for anything that quotes a URL."""

from __future__ import annotations

import re

SECRET_PARAMS = ("api_key", "apikey", "api-key", "key", "token", "access_token")
_SECRET_IN_QUERY = re.compile(r"(?i)([?&](?:%s)=)[^&#\s]*" % "|".join(re.escape(p) for p in SECRET_PARAMS))


def mask_url(url: str) -> str:
    """`...?api_key=abc&q=x` to `...?api_key=***&q=x`."""
    return _SECRET_IN_QUERY.sub(r"\1***", str(url))

