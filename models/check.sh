#!/usr/bin/env bash
# Retrains the anomaly model and checks it (issue 18):
#   1. train.py --check: retraining gives the committed bytes;
#   2. verify_ort.py: onnxruntime's scores match vectors.json.
# The venv (pinned PyPI packages, models/requirements.txt) is kept at
# $HOME/.cache/tidesync-models-venv and reused while the pins are unchanged.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${TIDESYNC_MODELS_VENV:-$HOME/.cache/tidesync-models-venv}"
stamp="$venv/.requirements"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! cmp -s "$here/requirements.txt" "$stamp"; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$stamp"
fi
"$venv/bin/python" "$here/train.py" --check
"$venv/bin/python" "$here/verify_ort.py"
