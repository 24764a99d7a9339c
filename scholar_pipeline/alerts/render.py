"""A digest as Slack blocks and as mail (plain text and HTML): titles are text, escaped for each medium."""

from __future__ import annotations

import html
from email.message import EmailMessage
from email.utils import make_msgid

from scholar_pipeline.alerts.digest import Digest, DigestWork

MAX_TITLE = 300  # characters shown of a title; a Slack section takes 3,000
MAX_HEADER = 150  # Slack's limit for a header block


def counts_line(digest: Digest) -> str:
    counts = digest.counts
    per_provider = ", ".join(f"{provider} {n:,}" for provider, n in sorted(counts.identified.items()))
    return (f"Records identified: {counts.total_identified:,} ({per_provider or 'none yet'}); duplicates removed: "
            f"{counts.duplicates_within:,} within and {counts.duplicates_across:,} across providers; "
            f"unique records: {counts.unique:,}")


def work_details(work: DigestWork) -> str:
    return " · ".join(str(part) for part in (work.year, work.venue, f"found by {', '.join(work.providers)}") if part)


def _title(work: DigestWork) -> str:
    return work.title if len(work.title) <= MAX_TITLE else work.title[: MAX_TITLE - 1] + "…"


# --- Slack -------------------------------------------------------------------------------------------------------

def slack_escape(text: str) -> str:
    """Slack's three control characters (https://api.slack.com/reference/surfaces/formatting#escaping)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(digest: Digest) -> dict:
    """`text` (the notification's line) and `blocks`: a header, the search, one section per work, the counts."""
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": digest.headline[:MAX_HEADER]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": slack_escape(digest.description)}},
        {"type": "divider"},
    ]
    for work in digest.top:
        title = slack_escape(_title(work))
        # A link's URL may not hold `|` or `>`; DOI links are percent-encoded, a record URL is checked.
        linked = f"<{work.link}|{title}>" if work.link and not set("|<> ") & set(work.link) else title
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
    message["Message-ID"] = make_msgid(idstring=digest.digest_id, domain="scholar-pipeline.invalid")
    message["X-Scholar-Pipeline-Digest"] = digest.digest_id
    message.set_content(email_text(digest))
    message.add_alternative(email_html(digest), subtype="html")
    return message


def email_text(digest: Digest) -> str:
    lines = [digest.headline, digest.description, ""]
    for number, work in enumerate(digest.top, 1):
        lines += [f"{number}. {_title(work)}", f"   {work_details(work)}"]
        if work.link:
            lines.append(f"   {work.link}")
    if digest.more > 0:
        lines.append(f"... and {digest.more:,} more")
    lines += ["", counts_line(digest), "", f"digest {digest.digest_id}"]
    return "\n".join(lines) + "\n"


def email_html(digest: Digest) -> str:
    items = []
    for work in digest.top:
        title = html.escape(_title(work))
        linked = f'<a href="{html.escape(work.link)}">{title}</a>' if work.link else title
        items.append(f"<li><strong>{linked}</strong><br><small>{html.escape(work_details(work))}</small></li>")
    more = f"<p>… and {digest.more:,} more</p>" if digest.more > 0 else ""
    return (f"<!DOCTYPE html><html><body>"
            f"<h2>{html.escape(digest.headline)}</h2><p>{html.escape(digest.description)}</p>"
            f"<ol>{''.join(items)}</ol>{more}"
            f"<p><small>{html.escape(counts_line(digest))}</small></p>"
            f"<p><small>digest {html.escape(digest.digest_id)}</small></p></body></html>\n")
