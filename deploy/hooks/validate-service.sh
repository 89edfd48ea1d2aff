#!/bin/sh
# CodeDeploy ValidateService: the release this bundle names is current and serves through nginx.
# The work is in the bundled xtask (`xtask hook --help`), which reads CodeDeploy's
# DEPLOYMENT_GROUP_NAME and DEPLOYMENT_ID and this bundle's revision.json.
set -eu
exec "$(dirname "$0")/../../bin/xtask" hook validate-service
