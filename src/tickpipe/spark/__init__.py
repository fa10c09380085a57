"""Spark Structured Streaming as the stream processor (`tickpipe spark`).

The job reads tickpipe's trades topic and writes the same candles, to the same tables, as
`tickpipe process`; tests/spark/ proves them equal. pyspark is the `spark` extra; nothing here
imports it at module level except `plan` and `job`, which only load when the job runs.
"""
