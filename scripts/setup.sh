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
# Lava: both packages declare Python <3.11 and pin torch<2.4, so they are installed without their
# declared dependencies; requirements-lava.txt lists what they really need at run time.
"$VPY" -m pip install --quiet -r requirements-lava.txt
"$VPY" -m pip install --quiet --no-deps --ignore-requires-python lava-nc==0.10.0 lava-dl==0.6.0
"$VPY" -m pip install --quiet --no-deps -e .
echo "ilif-deploy is set up in .venv"
