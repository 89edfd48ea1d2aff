#!/bin/sh
# CodeDeploy AfterAllowTraffic: the release is current and /lb-health answers 200.
# The work is in the bundled xtask (`xtask hook --help`), which reads CodeDeploy's
# DEPLOYMENT_GROUP_NAME and DEPLOYMENT_ID and this bundle's revision.json.
set -eu
exec "$(dirname "$0")/../../bin/xtask" hook after-allow-traffic
