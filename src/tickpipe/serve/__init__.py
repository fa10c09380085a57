"""The HTTP API, the live WebSocket push and (later) the dashboard page."""
