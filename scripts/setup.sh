#!/usr/bin/env bash
# Set up ilif-deploy in ./.venv on a fresh machine (Python 3.11, CPU only). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
VPY=.venv/bin/python
"$VPY" -m pip install --quiet --upgrade pip
# Pinned runtime and test dependencies (torch==2.13.0 resolves to the local CPU build).
"$VPY" -m pip install --quiet -r requirements.txt
# Lava: lava-nc declares Python <3.11 and numpy <2, so it is installed without its declared
# dependencies; requirements-lava.txt lists what it really needs at run time.  lava-dl is not
# needed (ilif-deploy loads its own netx-like HDF5 files; see docs/lava.md).
"$VPY" -m pip install --quiet -r requirements-lava.txt
"$VPY" -m pip install --quiet --no-deps --ignore-requires-python lava-nc==0.10.0
"$VPY" -m pip install --quiet --no-deps -e .
echo "ilif-deploy is set up in .venv"
