from tickpipe.bench.ws_ingest import measure


def test_ws_ingest_reports_wall_and_cpu_rates_for_both_libraries_after_every_frame_arrives():
    # Each client returns only once it decoded every frame the server pushed, so a lost frame
    # would hang here (and time out) rather than report a rate.
    results = measure(frames=20_000)
    assert set(results) == {"picows (tickpipe WsClient)", "websockets"}
    for rates in results.values():
        assert rates.wall > 0 and rates.cpu > 0
        # CPU time can never exceed wall time in one thread, so per-CPU-second is the larger.
        assert rates.cpu >= rates.wall * 0.95
