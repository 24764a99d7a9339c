"""Sending a digest: Slack through slack-sdk's `WebhookClient`, mail through `smtplib`, JSON through httpx.

Each secret is read from its variable at the moment of sending and masked out of every
error: a failure names the saved search, the channel and the variable, never the value.
"""

from __future__ import annotations

import contextlib
import logging
import os
import smtplib
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

import httpx
from slack_sdk.webhook import WebhookClient

from scholar_pipeline.alerts.config import EmailChannel, SlackChannel, WebhookChannel
from scholar_pipeline.alerts.digest import Digest
from scholar_pipeline.alerts.render import email_message, slack_message
from scholar_pipeline.client.masking import MASK, mask_secret

SEND_TIMEOUT_SECONDS = 10  # each network step: connecting, each SMTP command, waiting for an answer
SEND_SECONDS = 2 * SEND_TIMEOUT_SECONDS  # what a pass keeps free for one send (a stalled mail server may take longer)
# slack-sdk logs the webhook URL (at DEBUG, and in its error line for an invalid URL). Its logger: one of its own,
# outside the logging tree (so no logging configuration turns it back on), above every level, with nowhere to write.
# The outcome comes back as the response or an exception, which `deliver` masks.
_SLACK_LOGGER = logging.Logger("scholar_pipeline.alerts.slack_sdk", logging.CRITICAL + 1)
_SLACK_LOGGER.addHandler(logging.NullHandler())
_SLACK_LOGGER.propagate = False
MIN_SECRET_PART = 8  # a URL's path segment or query value this long may be its token, and is masked wherever it shows


class DeliveryFailed(RuntimeError):
    """A digest did not reach a channel; the message is masked and says what to do."""


def deliver(channel: SlackChannel | WebhookChannel | EmailChannel, digest: Digest,
            environ: Mapping[str, str] = os.environ) -> str:
    """Send the digest; returns where it went (masked), or raises DeliveryFailed."""
    where = f"saved search {digest.search}, channel {channel.label}"
    secrets = {name: environ.get(name) or "" for name in channel.secret_variables()}
    problem = setup_problem(channel, environ)
    if problem:
        raise DeliveryFailed(f"{where}: {problem}")
    try:
        if isinstance(channel, SlackChannel):
            return _slack(secrets[channel.webhook_url_env], digest, channel.webhook_url_env)
        if isinstance(channel, WebhookChannel):
            return _webhook(secrets[channel.url_env], digest, channel.url_env)
        return _email(channel, secrets.get(channel.password_env or "", ""), digest)
    except DeliveryFailed as error:
        raise DeliveryFailed(_masked(f"{where}: {error}", secrets.values())) from None
    except Exception as error:  # noqa: BLE001 - any failure of a send is reported and retried, never lost
        raise DeliveryFailed(_masked(f"{where}: {type(error).__name__}: {error}; {_HINTS[channel.type]}",
                                     secrets.values())) from None


_HINTS = {
    "slack": "check that the daemon's machine reaches hooks.slack.com",
    "webhook": "check that the daemon's machine reaches the endpoint and that it takes a JSON POST",
    "email": "check host, port, security, user and password (and that the daemon's machine reaches the server)",
}


def setup_problem(channel: SlackChannel | WebhookChannel | EmailChannel, environ: Mapping[str, str] = os.environ) -> str | None:
    """What stops the channel before anything is sent (a variable unset, or not holding a URL), never its value."""
    missing = [name for name in channel.secret_variables() if not environ.get(name)]
    if missing:
        return (f"environment variable {' and '.join(missing)} is not set where alerts are sent (the Dagster daemon's "
                "code server, or the shell of `scholar-pipeline alerts test`); set it")
    url_variable = getattr(channel, "webhook_url_env", None) or getattr(channel, "url_env", None)
    if url_variable:
        if not _is_webhook_url(environ[url_variable]):
            return (f"${url_variable} does not hold a webhook URL (https://host/path, with no quotes or spaces); "
                    "set it to the URL alone")
    return None


def _is_webhook_url(url: str) -> bool:
    """An http(s) URL with a host and a port that parse, and no quotes or spaces copied in with it."""
    try:
        parsed = urlsplit(url)
        parsed.port  # noqa: B018 - raises for a port out of range or not a number
    except ValueError:  # an unclosed IPv6 bracket, a bad port: checked here so no channel's pass stops on it
        return False
    return parsed.scheme in ("https", "http") and bool(parsed.hostname) and not any(c.isspace() or c in "'\"<>" for c in url)


def _masked(text: str, secrets) -> str:
    """`text` without any secret, nor the parts of a secret URL that may be its token (a receiver's error page may
    echo its path)."""
    for secret in filter(None, secrets):
        text = mask_secret(text, secret)
        for part in sorted(_token_parts(secret), key=len, reverse=True):
            text = text.replace(part, MASK)
    return text


def _token_parts(url: str) -> set[str]:
    """A URL's path and query, their segments and values, where long enough to hold a token."""
    if not _is_webhook_url(url):
        return set()
    parsed = urlsplit(url)
    values = [value for _, _, value in (pair.partition("=") for pair in parsed.query.split("&"))]
    return {part for part in [parsed.path, parsed.query, *parsed.path.split("/"), *values] if len(part) >= MIN_SECRET_PART}


def shown_url(url: str, variable: str) -> str:
    """A webhook URL as it may be shown: its host, and the variable that holds the rest."""
    return f"{urlsplit(url).scheme}://{urlsplit(url).hostname}/… (from ${variable})"


def _slack(url: str, digest: Digest, variable: str) -> str:
    # One attempt: the next pass is the retry.
    client = WebhookClient(url, timeout=SEND_TIMEOUT_SECONDS, logger=_SLACK_LOGGER, retry_handlers=[])
    response = client.send_dict(slack_message(digest))
    if response.status_code != 200:
        raise DeliveryFailed(f"Slack answered {response.status_code} {_masked(response.body, [url])[:200]!r} at "
                             f"{shown_url(url, variable)}; check the webhook in Slack's app settings")
    return f"Slack webhook {shown_url(url, variable)}"


def _webhook(url: str, digest: Digest, variable: str) -> str:
    request = httpx.Request("POST", url, json=digest.as_json(), headers={"Idempotency-Key": digest.digest_id},
                            extensions={"timeout": httpx.Timeout(SEND_TIMEOUT_SECONDS).as_dict()})
    # The transport rather than a Client: a Client logs every request's URL at INFO ("HTTP Request: POST <url>"),
    # and this URL is the secret.
    with httpx.HTTPTransport() as transport:
        response = transport.handle_request(request)
        response.read()
    if not response.is_success:
        raise DeliveryFailed(f"the webhook answered {response.status_code} {_masked(response.text, [url])[:200]!r} at "
                             f"{shown_url(url, variable)}")
    return f"webhook {shown_url(url, variable)}"


def _email(channel: EmailChannel, password: str, digest: Digest) -> str:
    message = email_message(digest, channel.sender, channel.to)
    context = ssl.create_default_context()  # verifies the server; SSL_CERT_FILE names another CA bundle
    if channel.security == "tls":
        smtp = smtplib.SMTP_SSL(channel.host, channel.server_port, timeout=SEND_TIMEOUT_SECONDS, context=context)
    else:
        smtp = smtplib.SMTP(channel.host, channel.server_port, timeout=SEND_TIMEOUT_SECONDS)
    try:
        if channel.security == "starttls":
            smtp.starttls(context=context)
        if channel.user:
            smtp.login(channel.user, password)
        refused = smtp.send_message(message)  # raises when every recipient is refused
    finally:
        # Once the server took the message, an odd answer to QUIT must not make it a failure (and a resend).
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.quit()
        smtp.close()
    accepted = [address for address in channel.to if address not in refused]
    # When some were refused the others have the mail, and sending again would repeat it to them: it counts as sent.
    refusal = (f", but the server refused {', '.join(sorted(refused))} (correct the address; this digest is not sent "
               "to it again)") if refused else ""
    return f"{', '.join(accepted)} via {channel.host}:{channel.server_port}{refusal}"
