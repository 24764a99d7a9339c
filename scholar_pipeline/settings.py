"""Where things live and how each provider is reached, read from the environment.

Every provider limit is a setting: `SCHOLAR_PIPELINE_<PROVIDER>_<NAME>` overrides the
provider's default for BASE_URL, RATE_LIMIT, MAX_IN_FLIGHT, PAGE_SIZE, MAX_RECORDS and MAX_RETRY_WAIT.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def pipeline_home(environ: Mapping[str, str] = os.environ) -> Path:
    """The directory holding the DuckDB file, the landing zone and the HTTP cache."""
    return Path(environ.get("SCHOLAR_PIPELINE_HOME") or PROJECT_ROOT / "data").resolve()


def queries_file(environ: Mapping[str, str] = os.environ) -> Path:
    return Path(environ.get("SCHOLAR_PIPELINE_QUERIES") or PROJECT_ROOT / "queries.yaml").resolve()


def mailto(environ: Mapping[str, str] = os.environ) -> str | None:
    return environ.get("SCHOLAR_PIPELINE_MAILTO") or None


def cache_url(environ: Mapping[str, str] = os.environ) -> str | None:
    """`redis://...` shares the HTTP response cache; unset, it is SQLite under the home."""
    return environ.get("SCHOLAR_PIPELINE_CACHE_URL") or None


REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
RATE_LIMIT_FALLBACKS = ("fail", "local")


def rate_limit_url(environ: Mapping[str, str] = os.environ) -> str | None:
    """The Redis that shares the rate limits across machines: SCHOLAR_PIPELINE_RATE_LIMIT_URL, else the HTTP cache's
    Redis (SCHOLAR_PIPELINE_CACHE_URL). None (`local`, or no Redis named) keeps them per machine, in SQLite."""
    raw = (environ.get("SCHOLAR_PIPELINE_RATE_LIMIT_URL") or "").strip()
    if raw.lower() == "local":
        return None
    if raw:
        if not raw.startswith(REDIS_SCHEMES):
            raise ValueError(f"SCHOLAR_PIPELINE_RATE_LIMIT_URL must start with one of {', '.join(REDIS_SCHEMES)} or be "
                             f"`local`; got a {raw.partition(':')[0]!r} URL")
        return raw
    shared_cache = cache_url(environ)
    return shared_cache if shared_cache and shared_cache.startswith(REDIS_SCHEMES) else None


def rate_limit_fallback(environ: Mapping[str, str] = os.environ) -> str:
    """What a fetch does when the rate limit's Redis does not answer: `fail` (the default) or `local` (limit this
    machine alone, in SQLite, until Redis answers again)."""
    raw = (environ.get("SCHOLAR_PIPELINE_RATE_LIMIT_FALLBACK") or "fail").strip().lower()
    if raw not in RATE_LIMIT_FALLBACKS:
        raise ValueError(f"SCHOLAR_PIPELINE_RATE_LIMIT_FALLBACK={raw!r} must be `fail` or `local`")
    return raw


def cache_key(environ: Mapping[str, str] = os.environ) -> MultiFernet | None:
    """The cipher of SCHOLAR_PIPELINE_CACHE_KEY (Fernet keys, comma-separated to rotate) that encrypts the HTTP cache
    at rest, or None to keep it plain; a malformed key is a ValueError naming the variable, never showing the value."""
    raw = environ.get("SCHOLAR_PIPELINE_CACHE_KEY")
    if raw in (None, ""):
        return None
    from scholar_pipeline.client.encrypted_storage import cipher_from_setting  # here: other settings load no hishel

    return cipher_from_setting(raw, "SCHOLAR_PIPELINE_CACHE_KEY")


def monitor_days(environ: Mapping[str, str] = os.environ) -> int:
    """How many trailing days of publication dates each daily schedule tick fetches again."""
    raw = environ.get("SCHOLAR_PIPELINE_MONITOR_DAYS")
    return 30 if raw in (None, "") else _positive("SCHOLAR_PIPELINE_MONITOR_DAYS", raw, int)


def drift_severity(environ: Mapping[str, str] = os.environ) -> str:
    """How the `schema_drift` check fails when a partition's fields moved: `warn` (the default; the rows are fine, the
    parser reads what it knows) or `error`, for a deployment that wants a person to look before anything else."""
    raw = (environ.get("SCHOLAR_PIPELINE_DRIFT_SEVERITY") or "warn").strip().lower()
    if raw not in ("warn", "error"):
        raise ValueError(f"SCHOLAR_PIPELINE_DRIFT_SEVERITY={raw!r} must be `warn` or `error`")
    return raw


def _positive(variable: str, raw: str, convert: type[int] | type[float]):
    """`raw` as a finite number above zero, or a ValueError naming the variable and its value."""
    try:
        value = convert(raw)
    except ValueError:
        raise ValueError(f"{variable}={raw!r} is not a valid {convert.__name__}") from None
    # float() accepts "inf", "nan" and "1e999": an infinite rate would switch the limit
    # off, and NaN compares false with everything (and breaks the limiter's SQLite maths).
    if not math.isfinite(value):
        raise ValueError(f"{variable}={raw!r} must be a finite number")
    if value <= 0:
        raise ValueError(f"{variable}={raw!r} must be positive")
    return value


@dataclass(frozen=True)
class ProviderSettings:
    base_url: str
    rate_limit: float  # requests per second, shared by every process on this machine
    page_size: int
    max_records: int  # a partition larger than this fails loudly instead of paging forever
    max_retry_wait: float = 60.0  # seconds, the longest wait between attempts, also when the provider asks for longer
    # Requests awaiting their answer at once, across the processes sharing the rate limit; None: no cap. Providers that
    # cap connections (arXiv one, Crossref's public pool one) refuse or block a client over it, whatever its rate.
    max_in_flight: int | None = None


def provider_settings(name: str, defaults: ProviderSettings, environ: Mapping[str, str] = os.environ) -> ProviderSettings:
    """The provider's defaults with any `SCHOLAR_PIPELINE_<PROVIDER>_<SETTING>` applied."""
    prefix = f"SCHOLAR_PIPELINE_{name.upper()}_"

    def read(setting: str, default, convert):
        raw = environ.get(prefix + setting)
        if raw in (None, ""):
            return default
        return raw if convert is str else _positive(prefix + setting, raw, convert)

    return ProviderSettings(
        base_url=read("BASE_URL", defaults.base_url, str).rstrip("/"),
        rate_limit=read("RATE_LIMIT", defaults.rate_limit, float),
        page_size=read("PAGE_SIZE", defaults.page_size, int),
        max_records=read("MAX_RECORDS", defaults.max_records, int),
        max_retry_wait=read("MAX_RETRY_WAIT", defaults.max_retry_wait, float),
        max_in_flight=read("MAX_IN_FLIGHT", defaults.max_in_flight, int),
    )



def max_null_title_share(environ: Mapping[str, str] = os.environ) -> float:
    """The share of a partition's rows that may lack a title before `titles_present` warns (some Crossref records, such
    as components and peer reviews, have none)."""
    raw = environ.get("SCHOLAR_PIPELINE_MAX_NULL_TITLE_SHARE")
    share = 0.1 if raw in (None, "") else _positive("SCHOLAR_PIPELINE_MAX_NULL_TITLE_SHARE", raw, float)
    if share > 1:
        raise ValueError(f"SCHOLAR_PIPELINE_MAX_NULL_TITLE_SHARE={raw!r} is a share: a number above 0 and at most 1")
    return share


def dataset_automation_on(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the `dataset_automation` sensor starts running (`on`, the default) or stopped (`off`: turn it on in the
    UI, or build group `dataset` by hand)."""
    raw = (environ.get("SCHOLAR_PIPELINE_DATASET_AUTOMATION") or "on").strip().lower()
    if raw not in ("on", "off"):
        raise ValueError(f"SCHOLAR_PIPELINE_DATASET_AUTOMATION={raw!r} must be `on` or `off`")
    return raw == "on"


def alerts_interval_seconds(environ: Mapping[str, str] = os.environ) -> int:
    """How often the `saved_search_alerts` sensor looks for digests that are due (and retries failed sends)."""
    raw = environ.get("SCHOLAR_PIPELINE_ALERTS_INTERVAL_SECONDS")
    return 60 if raw in (None, "") else _positive("SCHOLAR_PIPELINE_ALERTS_INTERVAL_SECONDS", raw, int)


EXECUTORS = ("in_process", "celery")


def executor_name(environ: Mapping[str, str] = os.environ) -> str:
    """Where runs execute their steps: `in_process` (the default: in the run's own process) or `celery` (on the Celery
    workers of DAGSTER_CELERY_BROKER_URL, on any machine)."""
    raw = (environ.get("SCHOLAR_PIPELINE_EXECUTOR") or "in_process").strip().lower().replace("-", "_")
    if raw not in EXECUTORS:
        raise ValueError(f"SCHOLAR_PIPELINE_EXECUTOR={raw!r} must be one of {', '.join(EXECUTORS)}")
    return raw
