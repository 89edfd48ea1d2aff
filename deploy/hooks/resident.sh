# Sourced by every hook script. The hooks run the host's resident program, never a program
# from this bundle: it checks the bundle's files against the release's signed manifest, the
# release's branch against this host's environment and its age against what the host
# installed, and only then runs the release's own (verified) host program.
#
# The resident program is <root>/bin/xtask (root: HITSAVE_ROOT in the host settings, else
# /opt/hitsave), put there by the user data and replaced only by a verified release's host
# program. A host set up before it existed uses the host program of the release it runs,
# verified when that release was installed; its first deployment installs the resident one.
bundle=$(cd "$(dirname "$0")/../.." && pwd)
config=${HITSAVE_HOST_CONFIG:-/etc/hitsave/host.env}
root=$(sed -n 's/^[[:space:]]*HITSAVE_ROOT[[:space:]]*=[[:space:]]*//p' "$config" 2>/dev/null |
  tail -n 1 | tr -d "\"'" | sed 's/[[:space:]]*$//')
root=${root:-/opt/hitsave}
resident=$root/bin/xtask
if [ ! -x "$resident" ]; then
  resident=$root/current/xtask/bin/xtask
fi

# Fails, saying why, when the host has no program to check this bundle with.
need_resident() {
  if [ ! -x "$resident" ]; then
    echo "hitsave: no resident program at $root/bin/xtask and no release installed under $root: run the bootstrap of deploy/aws/user-data.sh on this host (docs/aws-setup.md, \"The host\")" >&2
    return 1
  fi
}
