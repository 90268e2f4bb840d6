# Source this file to get the workspace environment (venv, built interfaces, safe DDS defaults).
#   source scripts/env.sh
# Safe defaults for a development machine: DDS discovery stays on localhost. On a robot network,
# export ROS_AUTOMATIC_DISCOVERY_RANGE / ROS_DOMAIN_ID yourself before sourcing.
_IV_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export VIRTUAL_ENV="$_IV_ROOT/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VIRTUAL_ENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export COLCON_PYTHON_EXECUTABLE="$VIRTUAL_ENV/bin/python"
if [ -f "$_IV_ROOT/install/local_setup.bash" ]; then
  # colcon's setup scripts read unset variables: relax `set -u` while sourcing them
  case $- in *u*) _IV_NOUNSET=1; set +u ;; *) _IV_NOUNSET=0 ;; esac
  # shellcheck disable=SC1091
  source "$_IV_ROOT/install/local_setup.bash"
  [ "$_IV_NOUNSET" = 1 ] && set -u
  unset _IV_NOUNSET
  # internvla-run (colcon installs ament_python console scripts under lib/<package>, off the PATH)
  export PATH="$_IV_ROOT/install/internvla_bringup/lib/internvla_bringup:$PATH"
fi
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 1 ))}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
# Headless rendering for MuJoCo (CPU llvmpipe through EGL); no downloads from model hubs at run time.
export MUJOCO_GL="${MUJOCO_GL:-egl}"
export PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-egl}"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
export TOKENIZERS_PARALLELISM=false
unset _IV_ROOT
