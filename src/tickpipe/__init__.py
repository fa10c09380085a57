"""tickpipe: exchange trades to exact candles, stored and shown as they happen."""

__version__ = "0.1.0"
