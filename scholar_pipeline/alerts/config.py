"""A saved search's `alerts:`: the channels its digests go to, and when they go.

Secrets (webhook URLs, SMTP passwords) are named, never written: the YAML gives the name
of an environment variable (`webhook_url_env`, `url_env`, `password_env`), which is read
when a digest is sent. A secret written into the YAML is refused at load, naming the key
to use instead.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
EnvName = Annotated[str, StringConstraints(pattern=ENV_NAME)]
_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")
# Keys people write when they put the secret itself in the YAML, and the key that names its variable instead.
_SECRET_KEYS = {"webhook_url": "webhook_url_env", "url": "url_env", "password": "password_env", "token": None}


class _Channel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # How deliveries to this channel are recorded; defaults to the type. Renaming a channel makes it a new one.
    name: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]*$", max_length=64)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_secret_in_yaml(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, instead in _SECRET_KEYS.items():
                if key in data:
                    where = (f"put it in an environment variable and write `{instead}: <VARIABLE>`" if instead
                             else "put it in an environment variable")
                    raise ValueError(f"`{key}` would write a secret into the saved-search file; {where}")
        return data

    @property
    def label(self) -> str:
        return self.name or self.type  # type: ignore[attr-defined]

    def secret_variables(self) -> list[str]:
        """The environment variables this channel reads its secrets from."""
        return []


class SlackChannel(_Channel):
    """A Slack incoming webhook (https://api.slack.com/messaging/webhooks)."""

    type: Literal["slack"]
    webhook_url_env: EnvName

    def secret_variables(self) -> list[str]:
        return [self.webhook_url_env]


class WebhookChannel(_Channel):
    """Any HTTP endpoint that takes the digest as JSON (POST, `Idempotency-Key: <digest id>`)."""

    type: Literal["webhook"]
    url_env: EnvName

    def secret_variables(self) -> list[str]:
        return [self.url_env]


class EmailChannel(_Channel):
    """Mail over SMTP: `starttls` (the default, port 587), `tls` (implicit TLS, port 465) or `none` (port 25, no login)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    type: Literal["email"]
    host: Annotated[str, StringConstraints(min_length=1)]
    security: Literal["starttls", "tls", "none"] = "starttls"
    port: Annotated[int, Field(ge=1, le=65535)] | None = None  # by security: 587, 465 or 25
    user: str | None = None
    password_env: EnvName | None = None
    sender: Annotated[str, StringConstraints(pattern=_ADDRESS.pattern)] = Field(alias="from")
    to: Annotated[list[Annotated[str, StringConstraints(pattern=_ADDRESS.pattern)]], Field(min_length=1)]

    @property
    def server_port(self) -> int:
        return self.port or {"starttls": 587, "tls": 465, "none": 25}[self.security]

    @model_validator(mode="after")
    def _login_only_encrypted(self) -> EmailChannel:
        if (self.user is None) != (self.password_env is None):
            raise ValueError("give both `user` and `password_env` to log in, or neither")
        if self.user is not None and self.security == "none":
            raise ValueError("a login over `security: none` would send the password in clear; use starttls or tls")
        return self

    def secret_variables(self) -> list[str]:
        return [self.password_env] if self.password_env else []


Channel = Annotated[Union[SlackChannel, WebhookChannel, EmailChannel], Field(discriminator="type")]


class Alerts(BaseModel):
    """Where a saved search's digests go and how they are batched.

    A digest goes out once the search has had no landing for `quiet_minutes` (a backfill or a
    day's schedule becomes one digest), or when its oldest unannounced work has waited
    `max_wait_hours` (a steady trickle still gets through)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: Annotated[list[Channel], Field(min_length=1)]
    quiet_minutes: Annotated[float, Field(ge=0)] = 30
    max_wait_hours: Annotated[float, Field(gt=0)] = 24
    top: Annotated[int, Field(ge=1, le=40)] = 10  # Slack takes 50 blocks a message; each work is one

    @model_validator(mode="after")
    def _unique_labels(self) -> Alerts:
        labels = [channel.label for channel in self.channels]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(f"channels {repeated} appear more than once; give each a distinct `name`")
        return self
