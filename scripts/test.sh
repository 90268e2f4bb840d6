#!/usr/bin/env bash
# Runs every check of the workspace: ruff lint, ruff format check, then pytest over src/*/test.
# Extra arguments go to pytest (e.g. scripts/test.sh -k grounding).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
source scripts/env.sh
echo "[test] ROS_DOMAIN_ID=$ROS_DOMAIN_ID ROS_AUTOMATIC_DISCOVERY_RANGE=$ROS_AUTOMATIC_DISCOVERY_RANGE"
status=0
echo "[test] ruff check"
ruff check . || status=1
echo "[test] ruff format --check"
ruff format --check . || status=1
echo "[test] pytest"
python -m pytest "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "[test] pytest collected no tests: that is a failure here (the suite has tests)" >&2
  status=1
elif [ $rc -ne 0 ]; then
  status=$rc
fi
if [ $status -ne 0 ]; then echo "[test] FAILED (status $status)" >&2; else echo "[test] all checks passed"; fi
exit $status
