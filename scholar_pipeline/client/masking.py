"""Secrets out of what is shown: URLs, response bodies and error messages.

Credentials are added below the HTTP cache, so the URLs the pipeline handles carry none;
masking is the second line of defence for anything that quotes a URL, a response or an
exception. An echoed key is masked wherever it appears, so a key must be unlikely to be
ordinary text too: `check_secret` refuses a short or blank one at load, and the transport
that masks says so on the page (`MASKED_HEADER`), which the fetch logs.
"""

from __future__ import annotations

import re
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_SECRET_LENGTH = 16  # real keys are 32+ characters; a shorter one could also be a word or a number in a title
MASKED_HEADER = "x-scholar-pipeline-secret-masked"  # on a response in which the key was masked: how many times
SECRET_PARAMS = ("api_key", "apikey", "api-key", "key", "token", "access_token")
_SECRET_IN_QUERY = re.compile(r"(?i)([?&](?:%s)=)[^&#\s]*" % "|".join(re.escape(p) for p in SECRET_PARAMS))
_USERINFO_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@")
_LIBPQ_PASSWORD = re.compile(r"(?i)\b(password\s*=\s*)('[^']*'|\S+)")


def mask_url(url: str) -> str:
    """`...?api_key=abc&q=x` to `...?api_key=***&q=x`."""
    return _SECRET_IN_QUERY.sub(rf"\1{MASK}", str(url))


def mask_url_password(text: str) -> str:
    """`redis://user:secret@host` to `redis://user:***@host`, for any scheme."""
    return _USERINFO_PASSWORD.sub(rf"\1{MASK}@", text)


def mask_credentials(text: str) -> str:
    """`text` without URL passwords, libpq `password=` values (a PostgreSQL connection string) or secret URL
    parameters: for anything that quotes a connection string, as DuckDB's errors do."""
    return _LIBPQ_PASSWORD.sub(rf"\1{MASK}", mask_url_password(mask_url(text)))


def secret_forms(secret: str) -> set[str]:
    """The ways a secret shows up when quoted: as is, and URL-encoded."""
    return {secret, quote(secret, safe=""), quote_plus(secret)}


def mask_secret(text: str, secret: str | None) -> str:
    """`text` with the secret, in any of its forms, and any secret URL parameter masked."""
    text = mask_url(text)
    for form in secret_forms(secret) if secret else ():
        text = text.replace(form, MASK)
    return text


def check_secret(variable: str, secret: str) -> str:
    """The secret, if it can be a real key; else a ValueError that names the variable but never shows the value."""
    if any(c.isspace() or not c.isprintable() for c in secret):
        raise ValueError(f"{variable} holds whitespace or a control character (a trailing newline from a file?); "
                         "set it to the key alone")
    if len(secret) < MIN_SECRET_LENGTH:
        raise ValueError(f"{variable} is shorter than {MIN_SECRET_LENGTH} characters, so it cannot be a real key "
                         "(a placeholder?); set the key, or unset the variable")
    return secret
