"""One Spark session (local[2], the connector's jars from scripts/setup/spark.sh) for every
Spark test in the run: starting one costs 12-60 s and ~0.5 GB."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from servers.require import server_missing

PARTITIONS = 2  # of every test topic, and the shuffle partitions: one wave of tasks on local[2]


@pytest.fixture(scope="session")
def spark_session() -> Iterator[Any]:
    from tickpipe.spark.jars import check_pyspark, connector_jars

    problem = check_pyspark()
    if problem is not None:
        server_missing(problem)
    try:
        connector_jars()
    except FileNotFoundError as exc:
        server_missing(str(exc))
    from tickpipe.spark.job import session, stop_session

    spark = session("local[2]", PARTITIONS, "768m", app_name="tickpipe-tests")
    try:
        yield spark
    finally:
        stop_session(spark)
