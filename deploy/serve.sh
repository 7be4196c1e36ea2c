#!/bin/sh
# The container's entry point: export the models named in CNNSERVE_EXPORT into the repository if
# they are missing (the first start takes a few minutes), then run the server in their place.
set -eu
: "${CNNSERVE_EXPORT:=lenet5 vgg16 resnet50 resnet152 alphago_policy}"
# shellcheck disable=SC2086 # the list is meant to split into names
cnnserve export --repo "${CNNSERVE_REPO:-/models}" --if-missing $CNNSERVE_EXPORT
exec cnnserve serve "$@"
