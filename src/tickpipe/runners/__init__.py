"""The runners: each a short assembly of `tickpipe.runtime` parts for one mode (the embedded
pipeline, the Kafka processor, ingest). Only the CLI imports them."""
