#!/usr/bin/env bash
# Apache Airflow for the DAG in deploy/airflow/ and its test (pytest -m airflow): a virtualenv
# of its own in a cache outside git, never tickpipe's .venv (Airflow's pins would move the
# project's packages). Airflow is not a dependency of tickpipe: its tasks call the `tickpipe`
# executable. The tests find it at the same path (TICKPIPE_AIRFLOW_VENV overrides both).
# A stamp file names the installed version, so a second run does nothing and prints nothing.
#
# The version is pinned here, from PyPI only. Airflow's constraints files live on GitHub
# (raw.githubusercontent.com), which this project does not reach, so they are not used: pip
# resolves the rest of Airflow's dependencies itself, inside this venv.
set -euo pipefail
AIRFLOW_VERSION=3.3.2
VENV="${TICKPIPE_AIRFLOW_VENV:-$HOME/.cache/tickpipe/airflow-venv}"
STAMP="$VENV/.tickpipe-airflow-$AIRFLOW_VERSION"
[ -e "$STAMP" ] && exit 0
PYTHON="${AIRFLOW_PYTHON:-$(command -v python3.11 || command -v python3)}"
echo "installing apache-airflow==$AIRFLOW_VERSION into $VENV"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/pip" install --quiet --disable-pip-version-check "apache-airflow==$AIRFLOW_VERSION"
home="$(mktemp -d)"  # `airflow version` writes an airflow.cfg into AIRFLOW_HOME
AIRFLOW_HOME="$home" "$VENV/bin/airflow" version >/dev/null  # it starts: fail here, not later
rm -rf "$home"
touch "$STAMP"
