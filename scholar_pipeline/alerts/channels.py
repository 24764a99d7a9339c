"""Sending a digest: Slack through slack-sdk's `WebhookClient`, mail through `smtplib`, JSON through httpx.

Each secret is read from its variable at the moment of sending and masked out of every
error: a failure names the saved search, the channel and the variable, never the value.
"""

from __future__ import annotations

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
from scholar_pipeline.client.masking import mask_secret

SEND_TIMEOUT_SECONDS = 10
# slack-sdk logs the webhook URL at DEBUG on a logger whose level is DEBUG or unset: give it one that never does.
_SLACK_LOGGER = logging.getLogger("scholar_pipeline.alerts.slack_sdk")
_SLACK_LOGGER.setLevel(logging.WARNING)


class DeliveryFailed(RuntimeError):
    """A digest did not reach a channel; the message is masked and says what to do."""


def deliver(channel: SlackChannel | WebhookChannel | EmailChannel, digest: Digest,
            environ: Mapping[str, str] = os.environ) -> str:
    """Send the digest; returns where it went (masked), or raises DeliveryFailed."""
    where = f"saved search {digest.search}, channel {channel.label}"
    secrets = {name: environ.get(name) or "" for name in channel.secret_variables()}
    missing = [name for name, value in secrets.items() if not value]
    if missing:
        raise DeliveryFailed(f"{where}: environment variable {' and '.join(missing)} is not set where alerts are sent "
                             "(the Dagster daemon's code server, or the shell of `scholar-pipeline alerts test`); set it")
    try:
        if isinstance(channel, SlackChannel):
            return _slack(secrets[channel.webhook_url_env], digest, channel.webhook_url_env)
        if isinstance(channel, WebhookChannel):
            return _webhook(secrets[channel.url_env], digest, channel.url_env)
        return _email(channel, secrets.get(channel.password_env or "", ""), digest)
    except DeliveryFailed as error:
        raise DeliveryFailed(_masked(f"{where}: {error}", secrets.values())) from None
    except Exception as error:  # noqa: BLE001 - any failure of a send is reported and retried, never lost
        raise DeliveryFailed(_masked(f"{where}: {type(error).__name__}: {error}", secrets.values())) from None


def _masked(text: str, secrets) -> str:
    for secret in secrets:
        text = mask_secret(text, secret) if secret else text
    return text


def shown_url(url: str, variable: str) -> str:
    """A webhook URL as it may be shown: its host, and the variable that holds the rest."""
    return f"{urlsplit(url).scheme}://{urlsplit(url).hostname}/… (from ${variable})"


def _slack(url: str, digest: Digest, variable: str) -> str:
    response = WebhookClient(url, timeout=SEND_TIMEOUT_SECONDS, logger=_SLACK_LOGGER).send_dict(slack_message(digest))
    if response.status_code != 200:
        raise DeliveryFailed(f"Slack answered {response.status_code} {response.body[:200]!r} at "
                             f"{shown_url(url, variable)}; check the webhook in Slack's app settings")
    return f"Slack webhook {shown_url(url, variable)}"


def _webhook(url: str, digest: Digest, variable: str) -> str:
    request = httpx.Request("POST", url, json=digest.as_json(), headers={"Idempotency-Key": digest.digest_id},
                            extensions={"timeout": httpx.Timeout(SEND_TIMEOUT_SECONDS).as_dict()})
    # The transport rather than a Client: a Client logs every request's URL at INFO ("HTTP Request: POST <url>"),
    # and this URL is the secret.
    with httpx.HTTPTransport(retries=1) as transport:
        response = transport.handle_request(request)
        response.read()
    if not response.is_success:
        raise DeliveryFailed(f"the webhook answered {response.status_code} {response.text[:200]!r} at "
                             f"{shown_url(url, variable)}")
    return f"webhook {shown_url(url, variable)}"


def _email(channel: EmailChannel, password: str, digest: Digest) -> str:
    message = email_message(digest, channel.sender, channel.to)
    context = ssl.create_default_context()  # verifies the server; SSL_CERT_FILE names another CA bundle
    if channel.security == "tls":
        smtp = smtplib.SMTP_SSL(channel.host, channel.port, timeout=SEND_TIMEOUT_SECONDS, context=context)
    else:
        smtp = smtplib.SMTP(channel.host, channel.port, timeout=SEND_TIMEOUT_SECONDS)
    with smtp:
        if channel.security == "starttls":
            smtp.starttls(context=context)
        if channel.user:
            smtp.login(channel.user, password)
        refused = smtp.send_message(message)
    if refused:
        raise DeliveryFailed(f"{channel.host}:{channel.port} refused {sorted(refused)}; the others were sent")
    return f"{', '.join(channel.to)} via {channel.host}:{channel.port}"
