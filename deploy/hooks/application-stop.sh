#!/bin/sh
# CodeDeploy ApplicationStop, run from the PREVIOUS revision's bundle. The stack keeps
# serving: the next release replaces it container by container in ApplicationStart. This
# hook only records what runs, and it never fails, so no earlier revision can block a
# later deploy.
lib="$(dirname "$0")/resident.sh"
{ [ -r "$lib" ] && . "$lib" && need_resident && "$resident" hook application-stop --bundle "$bundle"; } || true
exit 0
