#!/bin/sh
# CodeDeploy ValidateService: the release this bundle names is current and serves through nginx.
# The host's resident program checks this bundle first (resident.sh; `xtask hook --help`); it
# reads CodeDeploy's DEPLOYMENT_GROUP_NAME and DEPLOYMENT_ID and this bundle's revision.json.
set -eu
. "$(dirname "$0")/resident.sh"
need_resident
exec "$resident" hook validate-service --bundle "$bundle"
