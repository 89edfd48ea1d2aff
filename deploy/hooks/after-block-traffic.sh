#!/bin/sh
# CodeDeploy AfterBlockTraffic, run from the PREVIOUS revision's bundle once the balancer has
# deregistered this host and drained its requests. It only reports, and never fails.
lib="$(dirname "$0")/resident.sh"
{ [ -r "$lib" ] && . "$lib" && need_resident && "$resident" hook after-block-traffic --bundle "$bundle"; } || true
exit 0
