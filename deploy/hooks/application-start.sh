#!/bin/sh
# CodeDeploy ApplicationStart: migrate, swap the stack blue/green behind nginx and gate on
# health; when the new release is not healthy the old one is brought back and this fails.
# The work is in the bundled xtask (`xtask hook --help`), which reads CodeDeploy's
# DEPLOYMENT_GROUP_NAME and DEPLOYMENT_ID and this bundle's revision.json.
set -eu
exec "$(dirname "$0")/../../bin/xtask" hook application-start
