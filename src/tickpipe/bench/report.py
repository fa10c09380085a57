"""The benchmark's results as rich tables, saying plainly what was measured and how."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

_PATH_LABELS = {
    "naive": "naive baseline",
    "tickpipe": "tickpipe",
}
_PATH_NOTES = {
    "naive": "json.loads per message, a dict of open candles, one SQLite INSERT per trade",
    "tickpipe": "parse_frames (msgspec), CandleEngine, StoreWriter thread, DuckDB",
}


def render(results: dict[str, Any]) -> RenderableType:
    """Everything `tickpipe bench` prints at the end."""
    parts: list[RenderableType] = [_header(results), _paths(results)]
    if any(len(row.get("runs", ())) > 1 for row in results["paths"].values()):
        parts.append(_runs(results))
    parts.append(_checks(results))
    parts.append(_targets(results))
    if "profile" in results:
        parts.append(_profile(results["profile"]))
    return Group(*parts)


def print_report(results: dict[str, Any], console: Console | None = None) -> None:
    (console or Console()).print(render(results))


def _header(results: dict[str, Any]) -> Text:
    inp = results["input"]
    core = results["one_core"]
    machine = results["machine"]
    text = Text()
    text.append("tickpipe bench", style="bold")
    text.append(
        f": {inp['trades']:,} raw Binance trade frames ({inp['frames_mb']:,.0f} MB), "
        f"{inp['symbols']:,} symbols, windows {' '.join(inp['intervals'])}; event time "
        f"advances {inp['event_rate']:,.0f} trades/s ({inp['event_span_s']:,.1f} s of market); "
        f"frames handed over in chunks of {inp['chunk']:,}.\n"
    )
    text.append("One core: ", style="bold")
    text.append(
        f"each path ran in a fresh process pinned to CPU {core['cpu']} "
        "(os.sched_setaffinity); tickpipe's store writer thread shares that core and DuckDB "
        f"runs with SET threads={core['duckdb_threads']}. Time runs from the first chunk read "
        "to the last row committed.\n"
    )
    cpu = machine["cpu_model"] or "unknown CPU"
    text.append(
        f"Machine: {cpu}, CPUs {machine['cpus_available']}, Python {machine['python']}.",
        style="dim",
    )
    return text


def _paths(results: dict[str, Any]) -> Table:
    paths = results["paths"]
    naive_rate = paths["naive"]["trades_per_s"]
    table = Table(
        title="Throughput, raw frames to stored candles",
        title_justify="left",
        caption="naive: " + _PATH_NOTES["naive"] + "\ntickpipe: " + _PATH_NOTES["tickpipe"],
        caption_justify="left",
    )
    table.add_column("path")
    table.add_column("cores", justify="right")
    table.add_column("trades/s", justify="right")
    table.add_column("CPU µs/trade", justify="right")
    table.add_column("of it, main thread", justify="right")
    table.add_column("time", justify="right")
    table.add_column("peak RSS", justify="right")
    table.add_column("vs naive", justify="right")
    for key, row in paths.items():
        if key == "read":
            continue
        ratio = row["trades_per_s"] / naive_rate if naive_rate else float("nan")
        table.add_row(
            _PATH_LABELS.get(key, key.replace("_", " ")),
            str(len(row["cpus"])),
            f"{row['trades_per_s']:,.0f}",
            f"{row['cpu_us_per_trade']:.2f}",
            f"{row['main_cpu_s'] / row['trades'] * 1e6:.2f}" if row["trades"] else "n/a",
            f"{row['seconds']:.2f} s",
            f"{row['peak_rss_mb']:,.0f} MB",
            f"{ratio:.1f}x",
        )
    return table


def _runs(results: dict[str, Any]) -> Table:
    from tickpipe.bench.run import spread

    table = Table(
        title="Repeated runs: min / median / max",
        title_justify="left",
        caption="CPU µs/trade: CPU time of the whole process (every thread, user and system) "
        "over the trades, from the first chunk read to the last row committed: what the "
        "pipeline costs, whatever else the machine runs. Load: the 1-minute load average "
        "before and after each run.",
        caption_justify="left",
    )
    for name in ("path", "runs", "trades/s", "CPU µs/trade", "load"):
        table.add_column(name, justify="left" if name == "path" else "right")
    for key, row in results["paths"].items():
        runs = row.get("runs")
        if not runs:
            continue
        rate = spread([r["trades_per_s"] for r in runs])
        cpu = spread([r["cpu_us_per_trade"] for r in runs])
        loads = [x for r in runs for x in r["load_avg"]]
        table.add_row(
            _PATH_LABELS.get(key, key.replace("_", " ")),
            str(len(runs)),
            " / ".join(f"{x:,.0f}" for x in rate),
            " / ".join(f"{x:.2f}" for x in cpu),
            f"{min(loads):.1f} - {max(loads):.1f}",
        )
    return table


def _checks(results: dict[str, Any]) -> Text:
    read = results["paths"]["read"]
    same = results["same_candles"]
    tick = results["paths"]["tickpipe"]
    first = results["first_candle"]
    text = Text()
    text.append(
        f"Reading the frames alone: {read['trades_per_s']:,.0f} frames/s (included in both "
        "paths' time, as a WebSocket reader's cost would be).\n"
    )
    text.append(
        f"Stored: tickpipe {tick['stored_trades']:,} trades and {tick['stored_candles']:,} "
        f"candles; naive {results['paths']['naive']['stored_trades']:,} trades and "
        f"{results['paths']['naive']['stored_candles']:,} candles. "
        f"RSS after start-up, before the input: tickpipe {tick['rss_before_mb']:,.0f} MB, "
        f"naive {results['paths']['naive']['rss_before_mb']:,.0f} MB.\n"
    )
    if same["equal"]:
        text.append(f"Same candles in both stores: yes ({same['tickpipe']:,} compared).\n",
                    style="green")  # fmt: skip
    else:
        text.append("Same candles in both stores: NO\n", style="bold red")
        for problem in same["differences"]:
            text.append(f"  {problem}\n", style="red")
    if first["first_candle_s"] is None:
        text.append(f"`{first['command']}` stored no candle (exit {first['exit_code']}).\n",
                    style="red")  # fmt: skip
    else:
        start = first["start_line_s"]
        text.append(
            f"`{first['command']}`: first candle in the store {first['first_candle_s']:.2f} s "
            f"after the process was started (committed between {first['lower_bound_s']:.2f} "
            f"and {first['first_candle_s']:.2f} s, seen in a copy of the file); start line at "
            + (f"{start:.2f} s" if start is not None else "n/a")
            + f'; `python -c "import tickpipe.cli"` alone takes {first["import_s"]:.2f} s.'
        )
    return text


def _targets(results: dict[str, Any]) -> Table:
    table = Table(title="Targets", title_justify="left")
    table.add_column("target")
    table.add_column("goal", justify="right")
    table.add_column("measured", justify="right")
    table.add_column("result")
    for t in results["targets"]:
        table.add_row(
            t["name"],
            t["goal"],
            _measured(t),
            Text("pass", style="bold green") if t["met"] else Text("miss", style="bold red"),
        )
    return table


def _measured(target: dict[str, Any]) -> str:
    value = target["measured"]
    if value is None:
        return "n/a"
    goal = target["goal"]
    if "trades/s" in goal:
        return f"{value:,.0f} trades/s"
    if goal.endswith("x"):
        return f"{value:.1f}x"
    if goal.endswith("MB"):
        return f"{value:,.0f} MB"
    return f"{value:.2f} s"


def _profile(profile: dict[str, Any]) -> Group:
    tables = []
    for thread, data in profile["threads"].items():
        rows = data["top"]
        table = Table(
            title=f"cProfile, thread {thread!r}: {data['cpu_s']:.2f} s of CPU; top {len(rows)} "
            f"by own CPU time (profiled run: {profile['seconds']:.1f} s)",
            title_justify="left",
        )
        table.add_column("tottime", justify="right")
        table.add_column("cumtime", justify="right")
        table.add_column("calls", justify="right")
        table.add_column("function", overflow="fold")
        for r in rows:
            table.add_row(f"{r['tottime']:.3f}", f"{r['cumtime']:.3f}", f"{r['calls']:,}",
                          r["function"])  # fmt: skip
        tables.append(table)
    return Group(*tables)
