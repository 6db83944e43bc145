#!/usr/bin/env bash
# Set up ilif-deploy in ./.venv on a fresh machine (Python 3.11, CPU only). Safe to re-run.
#   --test   also install what only the tests need beyond requirements.txt: Debian's chromium, for the
#            browser test of the HTML report (as root with apt-get, e.g. in CI; elsewhere it says how).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--test" ] && ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "note: chromium is not installed; the HTML browser test will be skipped (apt-get install chromium)"
    fi
fi
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
VPY=.venv/bin/python
"$VPY" -m pip install --quiet --upgrade pip
# Pinned runtime and test dependencies (torch==2.13.0 resolves to the local CPU build).
"$VPY" -m pip install --quiet -r requirements.txt
# Lava: lava-nc and lava-dl declare Python <3.11 (and numpy <2, torch <2.4), so they are installed
# without their declared dependencies; requirements-lava.txt lists what they really need at run time.
# lava-dl's netx loads the .net files of --target netx (its tests); ilif-deploy reads .net with h5py.
"$VPY" -m pip install --quiet -r requirements-lava.txt
"$VPY" -m pip install --quiet --no-deps --ignore-requires-python lava-nc==0.10.0 lava-dl==0.6.0
"$VPY" -m pip install --quiet --no-deps -e .
echo "ilif-deploy is set up in .venv"
