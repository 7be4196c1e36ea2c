#!/bin/sh
# The server image's entry point: check that the model repository holds something, then run the
# server in this shell's place. The serving image has no torch: models are exported by the export
# stage (docker compose runs it first; see the Dockerfile).
set -eu
repo="${CNNSERVE_REPO:-/models}"
if [ -z "$(ls -A "$repo" 2>/dev/null)" ]; then
    echo "cnnserve-serve: the model repository $repo is empty; export models into it first" \
         "(docker compose up runs the export service; or: docker run -v VOLUME:$repo cnnserve-export)" >&2
    exit 1
fi
exec cnnserve serve "$@"
