"""Notifiers: where alerts go (log, webhook, Slack, Discord, Telegram, email)."""
