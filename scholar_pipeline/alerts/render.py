"""A digest as Slack blocks and as mail (plain text and HTML): titles are text, escaped for each medium."""

from __future__ import annotations

import datetime as dt
import html
from email.message import EmailMessage
from email.utils import format_datetime

from scholar_pipeline.alerts.digest import Digest, DigestWork

# Characters shown of each text, so that a work's section stays under Slack's 3,000 characters even when escaping makes
# each character five (`&amp;`): Slack refuses a whole message with one section over, or a header over 150.
MAX_TITLE = 280
MAX_VENUE = 150
MAX_DESCRIPTION = 500
MAX_LINK = 500  # a longer link is left out; the title stays
SLACK_SECTION = 3000
SLACK_HEADER = 150


def counts_line(digest: Digest) -> str:
    counts = digest.counts
    per_provider = ", ".join(f"{provider} {n:,}" for provider, n in sorted(counts.identified.items()))
    return (f"Records identified: {counts.total_identified:,} ({per_provider or 'none yet'}); duplicates removed: "
            f"{counts.duplicates_within:,} within and {counts.duplicates_across:,} across providers; "
            f"unique records: {counts.unique:,}")


def shortened(text: str, limit: int) -> str:
    """`text` on one line (a title may hold line breaks) and at most `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def work_details(work: DigestWork) -> str:
    venue = shortened(work.venue, MAX_VENUE) if work.venue else None
    return " · ".join(str(part) for part in (work.year, venue, f"found by {', '.join(work.providers)}") if part)


def _title(work: DigestWork) -> str:
    return shortened(work.title, MAX_TITLE)


def _link(work: DigestWork) -> str | None:
    return work.link if work.link and len(work.link) <= MAX_LINK else None


# --- Slack -------------------------------------------------------------------------------------------------------

def slack_escape(text: str) -> str:
    """Slack's three control characters (https://api.slack.com/reference/surfaces/formatting#escaping)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(digest: Digest) -> dict:
    """`text` (the notification's line) and `blocks`: a header, the search, one section per work, the counts."""
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": shortened(digest.headline, SLACK_HEADER)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": slack_escape(shortened(digest.description, MAX_DESCRIPTION))}},
        {"type": "divider"},
    ]
    for work in digest.top:
        title, link = slack_escape(_title(work)), _link(work)
        # A link's URL may not hold `|` or `>`; DOI links are percent-encoded, a record URL is checked.
        linked = f"<{link}|{title}>" if link and not set("|<> ") & set(link) else title
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": f"*{linked}*\n{slack_escape(work_details(work))}"}})
    if digest.more > 0:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"… and {digest.more:,} more"}]})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": slack_escape(counts_line(digest))}]})
    return {"text": digest.headline, "blocks": blocks}


# --- mail --------------------------------------------------------------------------------------------------------

def email_message(digest: Digest, sender: str, recipients: list[str]) -> EmailMessage:
    """A multipart/alternative mail: plain text first, HTML second (clients show the last part they can)."""
    message = EmailMessage()
    message["Subject"] = digest.headline
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(dt.datetime.now(dt.timezone.utc))
    # The same on every attempt at one digest, so that a mail system or a person can drop a repeat.
    message["Message-ID"] = f"<{digest.digest_id}@scholar-pipeline.invalid>"
    message["X-Scholar-Pipeline-Digest"] = digest.digest_id
    message.set_content(email_text(digest))
    message.add_alternative(email_html(digest), subtype="html")
    return message


def email_text(digest: Digest) -> str:
    lines = [digest.headline, shortened(digest.description, MAX_DESCRIPTION), ""]
    for number, work in enumerate(digest.top, 1):
        lines += [f"{number}. {_title(work)}", f"   {work_details(work)}"]
        if _link(work):
            lines.append(f"   {_link(work)}")
    if digest.more > 0:
        lines.append(f"... and {digest.more:,} more")
    lines += ["", counts_line(digest), "", f"digest {digest.digest_id}"]
    return "\n".join(lines) + "\n"


def email_html(digest: Digest) -> str:
    items = []
    for work in digest.top:
        title, link = html.escape(_title(work)), _link(work)
        linked = f'<a href="{html.escape(link)}">{title}</a>' if link else title
        items.append(f"<li><strong>{linked}</strong><br><small>{html.escape(work_details(work))}</small></li>")
    more = f"<p>… and {digest.more:,} more</p>" if digest.more > 0 else ""
    return (f"<!DOCTYPE html><html><body>"
            f"<h2>{html.escape(digest.headline)}</h2><p>{html.escape(shortened(digest.description, MAX_DESCRIPTION))}</p>"
            f"<ol>{''.join(items)}</ol>{more}"
            f"<p><small>{html.escape(counts_line(digest))}</small></p>"
            f"<p><small>digest {html.escape(digest.digest_id)}</small></p></body></html>\n")
