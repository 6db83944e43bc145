#!/usr/bin/env bash
# Set up ilif-deploy in ./.venv on a fresh machine (Python 3.11, CPU only). Safe to re-run.
#   --test   also install what only the tests need beyond requirements.txt: Debian's chromium, for the
#            browser test of the HTML report (as root with apt-get, e.g. in CI; elsewhere it says how), and
#            SpikingJelly 2.0.0 and 0.0.0.0.12 (networks written with it).
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
if [ "${1:-}" = "--test" ]; then
    # SpikingJelly for the tests of networks written with it, in the two versions users have: 2.0.0
    # (activation_based) in the venv, and 0.0.0.0.12 (clock_driven, the authors' API) in a folder of its own
    # (same package name; its tests run it in a subprocess).  --no-deps: both pin torchvision, which replaces the
    # CPU torch; 2.0.0 needs loguru at import, nothing else of its list.
    "$VPY" -m pip install --quiet --no-deps spikingjelly==2.0.0 loguru==0.7.3
    if [ ! -d .venv/spikingjelly-0.0.0.0.12/spikingjelly ]; then
        "$VPY" -m pip install --quiet --no-deps --target .venv/spikingjelly-0.0.0.0.12 spikingjelly==0.0.0.0.12
    fi
fi
echo "ilif-deploy is set up in .venv"
