#!/bin/sh
# CodeDeploy BeforeBlockTraffic (with a load balancer), run from the PREVIOUS revision's
# bundle before CodeDeploy deregisters this host: nginx's /lb-health, the target group's health
# check, answers 503 from now on, so the balancer stops sending before anything here changes.
# It never fails, so no earlier revision can block a later deploy.
lib="$(dirname "$0")/resident.sh"
{ [ -r "$lib" ] && . "$lib" && need_resident && "$resident" hook before-block-traffic --bundle "$bundle"; } || true
exit 0
