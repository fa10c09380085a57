"""tickpipe's batch side, scheduled by Airflow: once a day, for the day before the run's logical
date, fill the day's holes, verify its candles, export it to the Parquet lake, then apply
retention. Each task is one `tickpipe` command; every one of them is idempotent, so a run may be
repeated or cleared and re-run (a second run stores, writes and drops nothing).

Settings are Airflow Variables (or the environment: Airflow reads AIRFLOW_VAR_<NAME> too), read
when a task runs, never while the file is parsed:

  tickpipe_bin             the executable, or a command such as `/opt/tickpipe/bin/python -m
                           tickpipe` [tickpipe]
  tickpipe_data_dir        where the DuckDB file is [/var/lib/tickpipe]
  tickpipe_store           postgresql://... or mongodb://... instead of DuckDB [unset: DuckDB,
                           or tickpipe's own TICKPIPE_STORE]
  tickpipe_config          a TOML configuration file [unset]
  tickpipe_lake            the lake export writes to: DIR, file:///path or s3://bucket/prefix
                           [<data dir>/lake]
  tickpipe_exchanges       comma-separated exchanges to backfill [unset: every stored one]
  tickpipe_symbols         comma-separated BASE-QUOTE or NAME:BASE-QUOTE [unset: each one's own]
  tickpipe_rest_endpoints  comma-separated NAME=URL REST endpoint overrides [unset]
  tickpipe_retain_trades   trades older than this are dropped [30d]
  tickpipe_retain_candles  INTERVAL=AGE,... [1s=7d,1m=365d]

No secrets here: passwords and keys reach tickpipe from the workers' environment, as
tickpipe's credentials.py documents (TICKPIPE_STORE_PASSWORD or TICKPIPE_STORE_PASSWORD_FILE,
TICKPIPE_LAKE_ACCESS_KEY_ID, ...); BashOperator passes the environment on.

Retries: a failed task is retried (a rate limit, an exchange or a store briefly away; backfill
resumes where it stopped), except for exit status 2 (bad arguments: the same again would fail
the same way) and, for verify, 1 (the candles differ from the trades: a fact, not an outage).
"""

from __future__ import annotations

import shlex
from datetime import datetime, timedelta
from typing import Any

from airflow.exceptions import AirflowException, AirflowFailException

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG  # type: ignore[no-redef]
    from airflow.operators.bash import BashOperator  # type: ignore[no-redef]

DAG_ID = "tickpipe_daily"
BAD_ARGUMENTS = 2  # tickpipe's exit status for a bad argument: never retried


def setting(name: str, default: str = "") -> str:
    """A Jinja expression for Variable `tickpipe_<name>` (or AIRFLOW_VAR_TICKPIPE_<NAME>)."""
    return f"var.value.get({f'tickpipe_{name}'!r}, {default!r})"


def value(name: str, default: str = "") -> str:
    """The setting's value, quoted for the shell."""
    return "{{ " + setting(name, default) + " | sh }}"


def option(flag: str, name: str) -> str:
    """`flag VALUE` when the setting is set, nothing otherwise."""
    return "{% if " + setting(name) + " %} " + flag + " " + value(name) + "{% endif %}"


def repeated(flag: str, name: str) -> str:
    """`flag A flag B ...` for a comma-separated setting."""
    each = "{% for item in " + setting(name) + ".split(',') if item.strip() %}"
    return each + " " + flag + " {{ item.strip() | sh }}{% endfor %}"


DEFAULT_DATA_DIR = "/var/lib/tickpipe"
DATA_DIR = value("data_dir", DEFAULT_DATA_DIR)
# The day before the logical date: [DAY, NEXT) in UTC.
DAY = "{{ macros.ds_add(ds, -1) }}"
NEXT = "{{ ds }}"
# Not quoted: it may be a command with arguments (`/opt/tickpipe/bin/python -m tickpipe`).
TICKPIPE = "{{ " + setting("bin", "tickpipe") + " }}"
# tickpipe_lake, else <data dir>/lake.
LAKE = (
    "{% if " + setting("lake") + " %}" + value("lake") + "{% else %}"
    "{{ (" + setting("data_dir", DEFAULT_DATA_DIR) + " ~ '/lake') | sh }}{% endif %}"
)


class TickpipeOperator(BashOperator):
    """A `tickpipe` command whose exit statuses in `no_retry` fail the task at once."""

    def __init__(self, *, no_retry: tuple[int, ...] = (BAD_ARGUMENTS,), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.no_retry = no_retry

    def execute(self, context: Any) -> Any:
        try:
            return super().execute(context)
        except AirflowException as exc:
            process = self.subprocess_hook.sub_process
            status = process.returncode if process is not None else None
            if status in self.no_retry:
                raise AirflowFailException(
                    f"tickpipe exited with status {status}: not retried ({exc})"
                ) from exc
            raise


def command(name: str, *arguments: str) -> str:
    """`tickpipe NAME` on the configured store, then `arguments` (Jinja templates)."""
    common = [" --data-dir ", DATA_DIR, option("--store", "store"), option("--config", "config")]
    return TICKPIPE + " " + name + "".join(common) + "".join(arguments)


with DAG(
    dag_id=DAG_ID,
    description="tickpipe: fill the day's holes, verify it, export it to the lake, retention",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # DuckDB allows one writer at a time
    default_args={
        "retries": 3,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
        "execution_timeout": timedelta(hours=6),
    },
    user_defined_filters={"sh": shlex.quote},
    tags=["tickpipe"],
    doc_md=__doc__,
) as dag:
    backfill = TickpipeOperator(
        task_id="backfill_gaps",
        bash_command=command(
            "backfill",
            " --gaps --since ",
            DAY,
            " --until ",
            NEXT,
            repeated("--exchange", "exchanges"),
            repeated("--symbol", "symbols"),
            repeated("--rest-endpoint", "rest_endpoints"),
        ),
    )
    verify = TickpipeOperator(
        task_id="verify",
        bash_command=command("verify", " --since ", DAY, " --until ", NEXT),
        no_retry=(1, BAD_ARGUMENTS),
    )
    export = TickpipeOperator(
        task_id="export_lake",
        bash_command=command("export", " --since ", DAY, " --until ", NEXT, " --to ", LAKE),
    )
    retain = TickpipeOperator(
        task_id="retain",
        bash_command=command(
            "retain",
            " --trades ",
            value("retain_trades", "30d"),
            " --candles ",
            value("retain_candles", "1s=7d,1m=365d"),
            " --lake ",
            LAKE,
            " --now ",
            NEXT,
        ),
    )
    backfill >> verify >> export >> retain
