"""Next-candle forecasts, evaluated honestly: an online model per (exchange, symbol, interval)
that predicts the next final candle's close and a band around it, scored prequentially (each
candle is predicted before the model learns from it) against the naive baselines.

`model.py` is the model (river), `scores.py` what is kept of its errors, `evaluator.py` the
prequential loop over one instrument's final candles, `service.py` the runner hook that runs it
beside the engine on a thread of its own, `replay.py` the same over stored candles
(`tickpipe forecast --evaluate`).
"""
