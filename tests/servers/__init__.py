"""Real servers the tests start as processes (PostgreSQL, Kafka, Chromium): no Docker here."""
