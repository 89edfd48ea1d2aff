#!/bin/sh
# CodeDeploy BeforeInstall: download and verify every artifact of the release this bundle
# names, then unpack it. Nothing that runs is touched.
# The work is in the bundled xtask (`xtask hook --help`), which reads CodeDeploy's
# DEPLOYMENT_GROUP_NAME and DEPLOYMENT_ID and this bundle's revision.json.
set -eu
exec "$(dirname "$0")/../../bin/xtask" hook before-install
