"""The pipeline watching itself: Prometheus metrics, KPIs kept in the store, alerts.

The embedded pipeline's `Monitor` (service.py) reads only what it is given (the pipeline's
`PipelineStatus`, its store writer, a clock) and imports no runner; distributed.py watches the
`tickpipe ingest` and `tickpipe process` processes.
"""
