#!/usr/bin/env bash
# Idempotent: builds .venv-sim, the simulator's own virtualenv (MetaDrive 0.3.0.1 pins
# numpy<=1.24.2 and gym<0.26, which clash with .venv). About 850 MB; torch is not needed there.
# `owled sim` runs this on first use; re-runs are a no-op unless the pins below changed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${OWLED_SIM_VENV:-$root/.venv-sim}"
stamp="$venv/.owled-sim-setup"
# metadrive-simulator 0.3.0.1 is the only release whose wheel holds its 3D assets (0.4.x download
# them at first use); the rest is what it resolves to, pinned so a fresh clone gets the same set.
pins=(
  metadrive-simulator==0.3.0.1 panda3d==1.10.13 panda3d-simplepbr==0.10 panda3d-gltf==0.13
  numpy==1.24.2 gym==0.25.2 gym-notices==0.1.0 cloudpickle==3.1.3 opencv-python==4.11.0.86
  scipy==1.15.3 matplotlib==3.10.9 pandas==2.3.3 seaborn==0.13.2 pygame==2.6.1 lxml==6.2.0
  protobuf==3.20.3 psutil==7.2.2 tqdm==4.70.1 yapf==0.43.0 pillow==13.0.0
)
want="$(printf '%s\n' "${pins[@]}" | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
py="$(command -v python3.11 || command -v python3)"
echo "[sim_setup] creating $venv (MetaDrive 0.3.0.1 and its 3D assets, about 850 MB; one time)" >&2
[[ -x "$venv/bin/python" ]] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --progress-bar off "${pins[@]}" 2>&1 \
  | grep -v "is ignored: it is neither a file nor a directory" >&2 || true
"$venv/bin/python" -c "import metadrive, panda3d, simplepbr, gltf" \
  || { echo "[sim_setup] the simulator venv did not install; see the pip output above" >&2; exit 1; }
echo "$want" > "$stamp"
echo "[sim_setup] done: $venv" >&2
