"""History and batch jobs: `tickpipe backfill` (trades over exchanges' REST history, and the
holes in what is stored), built on the connectors' own REST calls and the engine."""
