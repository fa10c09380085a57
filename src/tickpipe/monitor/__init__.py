"""The pipeline watching itself: Prometheus metrics, KPIs kept in the store, alerts."""
