# Sourced by every script that starts ROS processes: venv, ament index and the
# DDS confinement of shared/ENVIRONMENT.md (localhost discovery, shared memory only).
_owled_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export VIRTUAL_ENV="$_owled_root/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
export AMENT_PREFIX_PATH="$VIRTUAL_ENV"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export FASTDDS_DEFAULT_PROFILES_FILE="$_owled_root/config/fastdds_localhost.xml"
# A domain of its own per run, so parallel runs never meet (0..101 are valid with default ports).
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( ($$ % 90) + 10 ))}"
unset FASTDDS_BUILTIN_TRANSPORTS ROS_LOCALHOST_ONLY
export PYTHONUNBUFFERED=1
