"""History and batch jobs: `tickpipe backfill` (trades over exchanges' REST history, and the
holes in what is stored), built on the connectors' own REST calls and the engine; raw-frame
recording and its exact re-processing; export and retention.

`recording` keeps every WebSocket frame a connector receives (with its receipt time and
connection) in rolled, zstd-compressed files; `replay_raw` runs them through the same parsers
and the same engine stage into a store; `export_csv` writes a store's trades and final candles
as CSV; `retention` drops old data by whole partitions where the store has them.
"""
