#!/usr/bin/env bash
# Create .venv with the pinned Python packages, and make the workshop's own code importable from it.
#
# Called by make when requirements.txt is newer than .venv/.installed, so a second run does nothing.
# With OFFLINE_CACHE=DIR (a folder filled by tools/offline-cache.sh), pip installs the wheels of
# DIR/pip and asks no index: no network is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "setup: the workshop needs Python >= 3.11; '$python' is $("$python" --version 2>&1 || echo missing)."
    echo "       Install a newer Python, or run make with PYTHON=/path/to/python3.11"
    exit 1
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $("$python" --version)"
    "$python" -m venv .venv
fi
source=()
if [ -n "${OFFLINE_CACHE:-}" ]; then
    if ! ls "$OFFLINE_CACHE"/pip/*.whl >/dev/null 2>&1; then
        echo "setup: OFFLINE_CACHE=$OFFLINE_CACHE has no pip/*.whl: fill it with tools/offline-cache.sh"
        exit 1
    fi
    source=(--no-index --find-links "$OFFLINE_CACHE/pip")
    echo "setup: installing the pinned Python packages (requirements.txt) into .venv from $OFFLINE_CACHE/pip (no network)"
else
    echo "setup: installing the pinned Python packages (requirements.txt) into .venv"
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check "${source[@]}" -r requirements.txt

# A .pth file puts py/ (the toolkit, the mini loop, ...) on the venv's path: the tests, the notebooks'
# Jupyter kernel and `make reveal` all import the same code. It holds this checkout's own path, so it
# is written here on each machine, never committed.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$PWD/py" > "$site/asyncfs-workshop.pth"
touch .venv/.installed
