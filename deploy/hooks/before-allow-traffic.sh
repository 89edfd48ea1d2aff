#!/bin/sh
# CodeDeploy BeforeAllowTraffic (with a load balancer): the release this bundle names serves;
# then nginx's /lb-health answers 200 again, so the target group finds this host healthy once
# CodeDeploy registers it.
# The work is in the bundled xtask (`xtask hook --help`), which reads CodeDeploy's
# DEPLOYMENT_GROUP_NAME and DEPLOYMENT_ID and this bundle's revision.json.
set -eu
exec "$(dirname "$0")/../../bin/xtask" hook before-allow-traffic
