#!/bin/sh
# CodeDeploy ApplicationStart: migrate, swap the stack blue/green behind nginx and gate on
# health; when the new release is not healthy the old one is brought back and this fails.
# The host's resident program checks this bundle first (resident.sh; `xtask hook --help`); it
# reads CodeDeploy's DEPLOYMENT_GROUP_NAME and DEPLOYMENT_ID and this bundle's revision.json.
set -eu
. "$(dirname "$0")/resident.sh"
need_resident
exec "$resident" hook application-start --bundle "$bundle"
