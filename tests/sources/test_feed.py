"""The connector scaffold: connection state kept per connection and derived for the source."""

from __future__ import annotations

from fakes import async_test
from fakes.harness import SourceRun
from fakes.kraken_server import FakeKraken

from tickpipe.sources import SourceStats
from tickpipe.sources.kraken.source import KrakenSource
from tickpipe.sources.ws import WsConfig

# A dropped connection stays down for a while (0.5-1 s of backoff) so the test can see it.
SLOW_RECONNECT = WsConfig(
    connect_timeout=2.0,
    idle_timeout=5.0,
    data_timeout=None,
    backoff_initial=1.0,
    backoff_max=1.0,
)


def test_source_is_connected_only_while_every_connection_is_up() -> None:
    stats = SourceStats()
    assert not stats.connected  # no connection yet
    first, second = stats.link(), stats.link()
    first.up = True
    assert not stats.connected
    second.up = True
    assert stats.connected
    first.up = False
    assert not stats.connected


@async_test()
async def test_a_source_with_one_of_two_connections_dropped_is_not_connected() -> None:
    symbols = ["BTC-USD", "ETH-USD"]
    async with FakeKraken() as server:
        source = KrakenSource(
            symbols,
            url=server.url,
            rest_url=None,
            ws_config=SLOW_RECONNECT,
            app_ping_interval=None,
            max_symbols_per_connection=1,
        )
        run = SourceRun(source)
        async with run.running():
            await server.wait_subscribed(2)
            await run.until(lambda: run.ctx.stats.connected)
            assert len(run.ctx.stats.links) == 2
            dropped = server.connections[0]
            dropped.transport.disconnect()
            links = run.ctx.stats.links
            await run.until(lambda: sorted(link.up for link in links) == [False, True])
            assert not run.ctx.stats.connected
            assert server.connections[1].open  # the other connection never went down
            await run.until(lambda: run.ctx.stats.connected)
        assert run.ctx.stats.reconnects >= 1
