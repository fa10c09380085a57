"""One Spark session (local[2], the connector's jars from scripts/setup/spark.sh) for every
Spark test in the run: starting one costs 12-60 s and ~0.5 GB. It reaches the session's S3
endpoint (moto, servers/s3.py) through S3A, for a checkpoint on S3."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from servers.require import server_missing
from servers.s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server

from tickpipe.stores.lake.location import LakeSettings

PARTITIONS = 2  # of every test topic, and the shuffle partitions: one wave of tasks on local[2]


# The lake's credentials as a user gives them (moto takes any).
S3_ENV = {"TICKPIPE_LAKE_ACCESS_KEY_ID": ACCESS_KEY, "TICKPIPE_LAKE_SECRET_ACCESS_KEY": SECRET_KEY}


def s3_settings(server: S3Server) -> LakeSettings:
    return LakeSettings("s3://", f"http://{server.endpoint}", REGION)


@pytest.fixture(scope="session")
def spark_session(s3_server: S3Server) -> Iterator[Any]:
    from tickpipe.spark.jars import check_pyspark, connector_jars, s3a_jars

    problem = check_pyspark()
    if problem is not None:
        server_missing(problem)
    try:
        connector_jars()
        s3a_jars()
    except FileNotFoundError as exc:
        server_missing(str(exc))
    from tickpipe.spark.job import session, stop_session

    spark = session("local[2]", PARTITIONS, "768m", app_name="tickpipe-tests",
                    s3=s3_settings(s3_server), env=S3_ENV)  # fmt: skip
    try:
        yield spark
    finally:
        stop_session(spark)
