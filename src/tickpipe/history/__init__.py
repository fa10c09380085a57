"""The batch side: raw-frame recording and its exact re-processing, export and retention.

`recording` keeps every WebSocket frame a connector receives (with its receipt time and
connection) in rolled, zstd-compressed JSON-lines files; `replay_raw` runs them through the
same parsers and the same engine stage into a store; `retention` drops old data by whole
partitions where the store has them.
"""
