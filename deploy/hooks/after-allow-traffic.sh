#!/bin/sh
# CodeDeploy AfterAllowTraffic: the release is current and /lb-health answers 200.
# The host's resident program checks this bundle first (resident.sh; `xtask hook --help`); it
# reads CodeDeploy's DEPLOYMENT_GROUP_NAME and DEPLOYMENT_ID and this bundle's revision.json.
set -eu
. "$(dirname "$0")/resident.sh"
need_resident
exec "$resident" hook after-allow-traffic --bundle "$bundle"
