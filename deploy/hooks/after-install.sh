#!/bin/sh
# CodeDeploy AfterInstall: check the host (secrets, Docker, Compose, disk, TLS) and build the
# release's runtime images. Nothing that runs is touched.
# The host's resident program checks this bundle first (resident.sh; `xtask hook --help`); it
# reads CodeDeploy's DEPLOYMENT_GROUP_NAME and DEPLOYMENT_ID and this bundle's revision.json.
set -eu
. "$(dirname "$0")/resident.sh"
need_resident
exec "$resident" hook after-install --bundle "$bundle"
