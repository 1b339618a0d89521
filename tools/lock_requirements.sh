#!/usr/bin/env bash
# Regenerates the fully pinned, hashed lock file of each track from its .in file.
# Needs uv (pip install uv); users never run this, they install from the lock files.
set -euo pipefail
cd "$(dirname "$0")/../requirements"
for track in django30 current; do
    uv pip compile --quiet --generate-hashes --python-version 3.11 --python-platform linux \
        "$track.in" -o "$track.txt"
done
