"""Where the Spark Kafka connector's jars are: fetched by scripts/setup/spark.sh from Maven
Central into a cache outside git, passed to Spark with `spark.jars`, so that no ivy
resolution (and no network) happens when the job starts. Beside them, Hadoop's S3A file
system for a checkpoint on S3, put on the driver's class path only then."""

from __future__ import annotations

import os
from pathlib import Path

SPARK_VERSION = "4.2.0"  # pyspark's, and the connector's (4.3.0's is not on Maven Central)
INSTALL_HINT = "the Spark job needs pyspark: pip install 'tickpipe[spark]' (pyspark==4.2.0)"
SETUP_HINT = "run scripts/setup/spark.sh (fetches the Kafka connector with Maven)"
CONNECTOR = f"spark-sql-kafka-0-10_2.13-{SPARK_VERSION}.jar"
HADOOP_VERSION = "3.5.0"  # of pyspark 4.2.0's hadoop-client jars: hadoop-aws must match it
S3A = f"hadoop-aws-{HADOOP_VERSION}.jar"


def _cache(name: str) -> Path:
    """A folder scripts/setup/spark.sh fills (XDG_CACHE_HOME, else ~/.cache)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "tickpipe" / name / "libs"


def jars_dir() -> Path:
    return _cache(f"spark-kafka-{SPARK_VERSION}")


def connector_jars(directory: Path | None = None) -> list[Path]:
    """The connector and its dependencies; FileNotFoundError (one line, what to run) when
    the cache is incomplete."""
    directory = directory or jars_dir()
    if not (directory / ".complete").exists() or not (directory / CONNECTOR).exists():
        raise FileNotFoundError(f"the Spark Kafka connector is not in {directory}: {SETUP_HINT}")
    return sorted(directory.glob("*.jar"))


def s3a_jars(directory: Path | None = None) -> list[Path]:
    """Hadoop's S3A file system and the AWS SDK; FileNotFoundError (one line, what to run)
    when the cache is incomplete."""
    directory = directory or _cache(f"spark-s3a-{HADOOP_VERSION}")
    if not (directory / ".complete").exists() or not (directory / S3A).exists():
        raise FileNotFoundError(
            f"a checkpoint on S3 needs Hadoop's S3A jars, not in {directory}: {SETUP_HINT}"
        )
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
