#!/usr/bin/env bash
# Regenerates the fully pinned, hashed lock files of each track from its .in files:
#   requirements/<track>.txt        what a step needs to run (make run's .venv/run-<track>)
#   requirements/<track>-tests.txt  that, at the same versions, plus the tools of the tests,
#                                   notebooks and benchmark (the full .venv/<track>)
#   requirements/uv.txt             the installer tools/install_environment.sh uses
# Uses uv: the one on PATH, else the one `make run` or `make env` fetched into .venv/uv.
# Users never run this; they install from the lock files.
set -euo pipefail
cd "$(dirname "$0")/.."
uv=$(command -v uv || echo "$PWD/.venv/uv/bin/uv")
tracks=$(python3 -m tools.tracks)
cd requirements
for track in $tracks; do
    # The runtime lock first: the full one is constrained to it (-c in <track>-tests.in).
    for name in "$track" "$track-tests"; do
        "$uv" pip compile --quiet --generate-hashes --python-version 3.11 --python-platform linux \
            "$name.in" -o "$name.txt"
    done
done
"$uv" pip compile --quiet --generate-hashes --python-version 3.11 --python-platform linux uv.in -o uv.txt
