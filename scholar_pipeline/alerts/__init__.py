"""Saved-search alerts: digests of new unique works sent to Slack, e-mail or a webhook, each exactly once."""
