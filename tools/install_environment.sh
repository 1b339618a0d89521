#!/usr/bin/env bash
# Creates or updates a virtual environment from a hashed lock file, saying what it is doing:
#   tools/install_environment.sh [--with-pip] VENV LOCK_FILE "what it is for"
# PYTHON names the interpreter to build it on (the Makefile passes Python 3.11's).
#
# It installs with uv (requirements/uv.txt, fetched once into .venv/uv): on a first install with
# an empty cache uv takes about a third of pip's time, because pip fetches one package after
# another. Where uv cannot be fetched, pip does it.
#
# Either way every module is byte-compiled as it is installed. Where PYTHONDONTWRITEBYTECODE is
# set (as on the machines this repository is tested on) Python never writes the .pyc files it
# would otherwise cache on first import, so without them every server, test and kernel
# compiles Django, Twisted and the rest from source each time it starts: measured on step 05
# under daphne, 2.7 s of CPU to answer with no .pyc files, 0.9 s with them.
set -euo pipefail
cd "$(dirname "$0")/.."
with_pip=false
if [ "${1:-}" = --with-pip ]; then with_pip=true; shift; fi
venv=$1 lock=$2 purpose=$3
python=${PYTHON:-python3}
uv=.venv/uv/bin/uv

packages="$(grep -c '==' "$lock") packages from $lock"
if [ -x "$venv/bin/python" ]; then
    echo "Updating $venv ($purpose) to $packages, which changed."
else
    echo "Installing $purpose into $venv: $packages (first time only; make reuses it)."
fi
started=$SECONDS

pip_of_this_python() {
    if "$python" -m pip --version >/dev/null 2>&1; then
        "$python" -m pip "$@"
    else  # Debian's Python comes without pip: one environment with pip, to install from.
        test -x .venv/pip/bin/pip || "$python" -m venv .venv/pip
        .venv/pip/bin/pip "$@"
    fi
}

if [ ! -x "$uv" ]; then
    echo "Fetching the installer, uv, into .venv/uv (once)."
    pip_of_this_python install --quiet --disable-pip-version-check --no-compile \
        --root-user-action=ignore --require-hashes --target .venv/uv -r requirements/uv.txt \
        || rm -rf .venv/uv
fi

if [ -x "$uv" ]; then
    # Only the full environments get pip of their own, for whoever wants to add a package.
    test -x "$venv/bin/python" || "$uv" venv --quiet --python "$python" \
        $($with_pip && echo --seed) "$venv"
    "$uv" pip install --quiet --compile-bytecode --python "$venv/bin/python" --require-hashes -r "$lock"
else
    echo "uv could not be fetched; installing with pip, which takes longer."
    test -x "$venv/bin/pip" || "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --require-hashes -r "$lock"
fi
echo "Installed $venv in $((SECONDS - started)) s."
