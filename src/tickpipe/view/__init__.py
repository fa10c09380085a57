"""What `tickpipe run` and `tickpipe demo` show in the terminal: the live panel and the closing
summary, drawn from the pipeline's `PipelineStatus` and its `Locations` (terminal.py)."""
