"""Where the Spark Kafka connector's jars are: fetched by scripts/setup/spark.sh from Maven
Central into a cache outside git, passed to Spark with `spark.jars`, so that no ivy
resolution (and no network) happens when the job starts."""

from __future__ import annotations

import os
from pathlib import Path

SPARK_VERSION = "4.2.0"  # pyspark's, and the connector's (4.3.0's is not on Maven Central)
INSTALL_HINT = "the Spark job needs pyspark: pip install 'tickpipe[spark]' (pyspark==4.2.0)"
SETUP_HINT = "run scripts/setup/spark.sh (fetches the Kafka connector with Maven)"
CONNECTOR = f"spark-sql-kafka-0-10_2.13-{SPARK_VERSION}.jar"


def jars_dir() -> Path:
    """The cache scripts/setup/spark.sh fills (XDG_CACHE_HOME, else ~/.cache)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "tickpipe" / f"spark-kafka-{SPARK_VERSION}" / "libs"


def connector_jars(directory: Path | None = None) -> list[Path]:
    """The connector and its dependencies; FileNotFoundError (one line, what to run) when
    the cache is incomplete."""
    directory = directory or jars_dir()
    if not (directory / ".complete").exists() or not (directory / CONNECTOR).exists():
        raise FileNotFoundError(f"the Spark Kafka connector is not in {directory}: {SETUP_HINT}")
    return sorted(directory.glob("*.jar"))


def check_pyspark() -> str | None:
    """None when pyspark of the pinned version imports; else the one line saying what to do."""
    try:
        import pyspark
    except ImportError:
        return INSTALL_HINT
    if pyspark.__version__ != SPARK_VERSION:
        return (
            f"pyspark {pyspark.__version__} is installed, tickpipe's Spark job needs "
            f"{SPARK_VERSION} (its Kafka connector's): pip install 'pyspark=={SPARK_VERSION}'"
        )
    return None
