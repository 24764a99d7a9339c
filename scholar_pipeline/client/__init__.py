"""The HTTP stack every provider client is built on: cache, credentials, rate limit, retries."""
