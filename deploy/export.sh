#!/bin/sh
# The export image's entry point: export the models named in CNNSERVE_EXPORT into the repository
# CNNSERVE_REPO where they are missing (the first run takes a few minutes; later runs keep what is
# there), then copy any entry missing from each folder given as an argument (the CUDA server's
# volume gets the same files without a second export).
set -eu
: "${CNNSERVE_EXPORT:=lenet5 vgg16 resnet50 resnet152 alphago_policy}"
repo="${CNNSERVE_REPO:-/models}"
# shellcheck disable=SC2086 # the list is meant to split into names
cnnserve export --repo "$repo" --if-missing $CNNSERVE_EXPORT
for copy in "$@"; do
    mkdir -p "$copy"
    for entry in "$repo"/*/; do
        name=$(basename "$entry")
        if [ ! -e "$copy/$name" ]; then
            # Stage and rename, as export does: a reader never sees half an entry.
            cp -R "$entry" "$copy/.$name.copy" && mv "$copy/.$name.copy" "$copy/$name"
        fi
    done
done
