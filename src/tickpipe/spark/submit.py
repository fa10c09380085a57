"""The `spark-submit` entry of the job: the same command as `tickpipe spark`, with the master
and the jars given to spark-submit instead (`session` leaves them alone under it):

    spark-submit --master local[2] --jars "$(ls ~/.cache/tickpipe/spark-kafka-4.2.0/libs/*.jar \\
        | paste -sd,)" "$(python -c 'import tickpipe.spark.submit as s; print(s.__file__)')" \\
        --kafka 127.0.0.1:9092 --store postgresql://user@host/db
"""

from __future__ import annotations

import sys


def main() -> None:
    from tickpipe.cli import main as cli

    sys.argv = ["tickpipe", "spark", *sys.argv[1:]]
    cli()


if __name__ == "__main__":
    main()
