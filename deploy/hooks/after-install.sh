#!/bin/sh
# CodeDeploy AfterInstall: check the host (secrets, Docker, Compose, disk, TLS) and build the
# release's runtime images. Nothing that runs is touched.
# The work is in the bundled xtask (`xtask hook --help`), which reads CodeDeploy's
# DEPLOYMENT_GROUP_NAME and DEPLOYMENT_ID and this bundle's revision.json.
set -eu
exec "$(dirname "$0")/../../bin/xtask" hook after-install
