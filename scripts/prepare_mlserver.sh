#!/usr/bin/env bash
# The model server the remote-model tests and benchmark call: MLServer with its
# scikit-learn runtime, in its own virtual environment (default .tmp/mlserver-venv,
# gitignored; XAI_MLSERVER_VENV to move it), created once and reused.
#
# scikit-learn is pinned to the service's own version so that both load the same
# pipelines and predict the same numbers. MLServer 1.7.1 is tried first; if pip cannot
# resolve it on this Python, older releases are tried in turn. The pins that worked are
# written to $VENV/pins.txt (and printed).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${XAI_MLSERVER_VENV:-.tmp/mlserver-venv}
SERVICE_PYTHON=${SERVICE_PYTHON:-.venv/bin/python}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
SKLEARN=$("$SERVICE_PYTHON" -c 'import sklearn; print(sklearn.__version__)')
STAMP="$VENV/.ready-sklearn-$SKLEARN"
if [ -f "$STAMP" ] && [ -x "$VENV/bin/mlserver" ]; then
  exit 0
fi
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
for release in 1.7.1 1.7.0 1.6.1; do
  pins=("mlserver==$release" "mlserver-sklearn==$release" "scikit-learn==$SKLEARN")
  echo "installing ${pins[*]} into $VENV"
  if "$VENV/bin/pip" install --quiet "${pins[@]}"; then
    "$VENV/bin/pip" freeze | grep -iE '^(mlserver|mlserver-sklearn|scikit-learn|numpy|pandas)==' \
      > "$VENV/pins.txt"
    echo "MLServer test environment ready:" $(cat "$VENV/pins.txt")
    touch "$STAMP"
    exit 0
  fi
  echo "pip could not install MLServer $release with scikit-learn $SKLEARN; trying an older release"
done
echo "no MLServer release installs with scikit-learn $SKLEARN on $("$PYTHON" --version)" >&2
exit 1
