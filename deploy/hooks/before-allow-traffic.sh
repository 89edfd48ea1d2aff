#!/bin/sh
# CodeDeploy BeforeAllowTraffic (with a load balancer): the release this bundle names serves;
# then nginx's /lb-health answers 200 again, so the target group finds this host healthy once
# CodeDeploy registers it.
# The host's resident program checks this bundle first (resident.sh; `xtask hook --help`); it
# reads CodeDeploy's DEPLOYMENT_GROUP_NAME and DEPLOYMENT_ID and this bundle's revision.json.
set -eu
. "$(dirname "$0")/resident.sh"
need_resident
exec "$resident" hook before-allow-traffic --bundle "$bundle"
