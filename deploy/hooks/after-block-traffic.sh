#!/bin/sh
# CodeDeploy AfterBlockTraffic, run from the PREVIOUS revision's bundle once the balancer has
# deregistered this host and drained its requests. It only reports, and never fails.
"$(dirname "$0")/../../bin/xtask" hook after-block-traffic || true
exit 0
