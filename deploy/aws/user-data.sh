#!/bin/sh
# EC2 user data for a HitSave host (Debian 12 "bookworm" AMI, x86_64 or arm64): Docker Engine
# with Compose v2 from Docker's apt repository, the CodeDeploy agent, the install root and the
# resident program that checks every deployment. Nothing else: the host gets no toolchain and
# no AWS CLI. Runs once, as root, at first boot; safe to run again.
set -eu
export DEBIAN_FRONTEND=noninteractive

# The artifact store and the channel whose release's host program becomes the resident one
# (docs/aws-setup.md): REPLACE both for your bucket and this host's environment.
HITSAVE_STORE=s3://hitsave-releases/hitsave
HITSAVE_CHANNEL=main

# The region, from the instance metadata service (IMDSv2).
token=$(curl -sf -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 300" \
  http://169.254.169.254/latest/api/token)
region=$(curl -sf -H "X-aws-ec2-metadata-token: $token" \
  http://169.254.169.254/latest/meta-data/placement/region)
instance_id=$(curl -sf -H "X-aws-ec2-metadata-token: $token" \
  http://169.254.169.254/latest/meta-data/instance-id)
# An instance of the stack's launch template (`cargo xtask aws apply`) names its channel and
# data volume in its tags, which the template lets the instance metadata show.
tag() { curl -sf -H "X-aws-ec2-metadata-token: $token" \
  "http://169.254.169.254/latest/meta-data/tags/instance/$1"; }
HITSAVE_CHANNEL=$(tag hitsave-channel || echo "$HITSAVE_CHANNEL")
HITSAVE_STORE=$(tag hitsave-store || echo "$HITSAVE_STORE")
role=$(tag hitsave-role || true) # "preview": the stack's user data trusts the preview keys

apt-get update -q
apt-get install -y -q ca-certificates curl gnupg ruby-full jq minisign

# Docker Engine and the Compose v2 plugin (Debian's own docker-compose is v1).
install -m 0755 -d /etc/apt/keyrings
curl -fsSL https://download.docker.com/linux/debian/gpg -o /etc/apt/keyrings/docker.asc
chmod a+r /etc/apt/keyrings/docker.asc
echo "deb [arch=$(dpkg --print-architecture) signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/debian bookworm stable" \
  > /etc/apt/sources.list.d/docker.list
apt-get update -q
apt-get install -y -q docker-ce docker-ce-cli containerd.io docker-compose-plugin

# live-restore: containers keep serving while dockerd itself is upgraded or restarted.
# No userland proxy: published ports take the kernel's NAT path.
cat > /etc/docker/daemon.json <<'JSON'
{
  "live-restore": true,
  "userland-proxy": false,
  "log-driver": "json-file",
  "log-opts": { "max-size": "10m", "max-file": "5" }
}
JSON
systemctl enable docker
systemctl restart docker

# The CodeDeploy agent, from AWS's bucket for this region.
if ! systemctl is-active --quiet codedeploy-agent; then
  cd /tmp
  curl -fsSL -o codedeploy-install "https://aws-codedeploy-$region.s3.$region.amazonaws.com/latest/install"
  chmod +x codedeploy-install
  ./codedeploy-install auto
  rm -f codedeploy-install
fi
systemctl enable --now codedeploy-agent

# The release public key: the host runs only releases signed by a key in /etc/hitsave/keys/
# (docs/aws-setup.md, "Signing keys"). It is public, so user data may carry it: paste the two
# lines of hitsave-release.key.pub (from `cargo xtask keygen`) between the KEY markers. Until
# then every deployment is refused, and `xtask doctor` says why.
install -d -m 0755 /etc/hitsave /etc/hitsave/keys /etc/hitsave/keys/revoked
cat > /etc/hitsave/keys/release.pub <<'KEY'
untrusted comment: REPLACE this file with hitsave-release.key.pub
REPLACE
KEY
chmod 0644 /etc/hitsave/keys/release.pub

# BEGIN host-settings
# The settings the stack gives this host in its tag hitsave-settings (KEY=VALUE words: the
# logs group, the team's topic, a preview host's environments): host.env gets each one it
# does not set yet, so an operator's line always wins.
host_env=${HITSAVE_HOST_ENV:-/etc/hitsave/host.env}
for setting in $(tag hitsave-settings || true); do
  case "$setting" in
    HITSAVE_[A-Z0-9_]*=*) ;;
    *) echo "hitsave: the tag hitsave-settings has '$setting', not a HITSAVE_ setting: ignored" >&2; continue ;;
  esac
  grep -q "^${setting%%=*}=" "$host_env" 2>/dev/null || echo "$setting" >> "$host_env"
done
# END host-settings

# BEGIN data-volume
# The database on its own EBS volume, which outlives the instance (the stack attaches it and
# names it in the tag hitsave-data-volume; the disk's serial is the volume id). A volume with
# no filesystem gets one; HitSave's (ext4, label hitsave-data) is mounted by UUID with nofail;
# any other is never formatted: the script stops, naming it.
data_volume=${HITSAVE_DATA_VOLUME:-$(tag hitsave-data-volume || true)}
data_dir=${HITSAVE_DATA_DIR:-/var/lib/hitsave-data}
if [ -n "$data_volume" ]; then
  device=${HITSAVE_DATA_DEVICE:-/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_$(echo "$data_volume" | tr -d -)}
  i=0 # CloudFormation attaches it once the instance runs.
  while [ ! -b "$device" ] && [ $i -lt 150 ]; do
    [ -b /dev/xvdf ] && device=/dev/xvdf # Xen instances name it by its attachment
    sleep 2; i=$((i + 1))
  done
  [ -b "$device" ] || { echo "hitsave: data volume $data_volume never appeared ($device): stopping" >&2; exit 1; }
  fs=$(blkid -p -o value -s TYPE "$device" || true)
  label=$(blkid -p -o value -s LABEL "$device" || true)
  if [ -z "$fs" ] && [ -z "$(blkid -p -o value -s PTTYPE "$device" || true)" ]; then
    mkfs.ext4 -q -L hitsave-data "$device"
  elif [ "$fs" != ext4 ] || [ "$label" != hitsave-data ]; then
    echo "hitsave: data volume $data_volume ($device) holds ${fs:-a partition table} labelled '$label', not HitSave's: not formatted, not mounted; attach HitSave's volume, or wipe this one by hand first" >&2
    exit 1
  fi
  uuid=$(blkid -p -o value -s UUID "$device")
  fstab=${HITSAVE_FSTAB:-/etc/fstab}
  install -d -m 0755 "$data_dir"
  grep -q "^UUID=$uuid " "$fstab" ||
    echo "UUID=$uuid $data_dir ext4 defaults,nofail,x-systemd.device-timeout=30s 0 2" >> "$fstab"
  mountpoint -q "$data_dir" || mount -o nofail UUID="$uuid" "$data_dir"
  host_env=${HITSAVE_HOST_ENV:-/etc/hitsave/host.env}
  grep -q "^HITSAVE_DATA_DIR=" "$host_env" 2>/dev/null || echo "HITSAVE_DATA_DIR=$data_dir" >> "$host_env"
fi
# END data-volume

# The install root. Secrets and TLS files are put there by the operator
# (docs/aws-setup.md), never through user data, which any process on the host can read.
install -d -m 0755 /opt/hitsave /opt/hitsave/bin
install -d -m 0700 /opt/hitsave/secrets /opt/hitsave/tls
# The host's name in its backups' keys (backups/<environment>/<instance id>/ in the store).
printf '%s\n' "$instance_id" > /opt/hitsave/host-id

# The resident program, /opt/hitsave/bin/xtask: every CodeDeploy hook runs it, and it checks a
# bundle against its release's signed manifest before anything from the bundle runs (a bundle
# carries no program). This script puts the first one there; later releases replace it only
# with their own verified host program. Run it again by hand if it failed here (no release on
# the channel yet, say): `HITSAVE_STORE=... /usr/local/sbin/hitsave-bootstrap`.
cat > /usr/local/sbin/hitsave-bootstrap <<'BOOTSTRAP'
#!/bin/sh
# Installs the host program of the release a channel names as the resident program
# ($HITSAVE_ROOT/bin/xtask): the channel pointer and the manifest are checked with Debian's
# minisign against the keys in $HITSAVE_KEYS (each signature's trusted comment must say what
# the document says), the artifact with sha256sum against the manifest; nothing larger than
# declared is downloaded. Settings: HITSAVE_STORE (s3://BUCKET/PREFIX, or a directory),
# HITSAVE_CHANNEL (main), HITSAVE_KEYS (/etc/hitsave/keys), HITSAVE_ROOT (/opt/hitsave);
# for S3, credentials from the instance role (or AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
# AWS_SESSION_TOKEN), the region from AWS_REGION or the instance, AWS_ENDPOINT_URL for
# S3-compatible servers.
set -eu
store=${HITSAVE_STORE:?set HITSAVE_STORE to s3://BUCKET/PREFIX or a directory}
channel=${HITSAVE_CHANNEL:-main}
keys=${HITSAVE_KEYS:-/etc/hitsave/keys}
root=${HITSAVE_ROOT:-/opt/hitsave}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
die() { echo "hitsave-bootstrap: $*; nothing was installed" >&2; exit 1; }

imds() {
  [ -n "${imds_token:-}" ] || imds_token=$(curl -sf -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 300" \
    http://169.254.169.254/latest/api/token) || die "no instance metadata (set the AWS_* variables)"
  curl -sf -H "X-aws-ec2-metadata-token: $imds_token" "http://169.254.169.254/latest/$1"
}

# fetch KEY FILE MAX: the object under KEY into FILE, refused past MAX bytes.
fetch() {
  case "$store" in
    s3://*)
      bucket=${store#s3://}
      prefix=
      case "$bucket" in */*) prefix=${bucket#*/}/ ;; esac
      bucket=${bucket%%/*}
      if [ -z "${AWS_ACCESS_KEY_ID:-}" ]; then
        role=$(imds meta-data/iam/security-credentials/) || die "the instance has no role"
        creds=$(imds "meta-data/iam/security-credentials/$role")
        AWS_ACCESS_KEY_ID=$(printf '%s' "$creds" | jq -er .AccessKeyId)
        AWS_SECRET_ACCESS_KEY=$(printf '%s' "$creds" | jq -er .SecretAccessKey)
        AWS_SESSION_TOKEN=$(printf '%s' "$creds" | jq -er .Token)
      fi
      region=${AWS_REGION:-${AWS_DEFAULT_REGION:-$(imds meta-data/placement/region)}}
      if [ -n "${AWS_ENDPOINT_URL:-}" ]; then
        url=${AWS_ENDPOINT_URL%/}/$bucket/$prefix$1
      else
        url=https://$bucket.s3.$region.amazonaws.com/$prefix$1
      fi
      token=${AWS_SESSION_TOKEN:+x-amz-security-token: $AWS_SESSION_TOKEN}
      curl -sSf --max-filesize "$3" -H "Range: bytes=0-$3" ${token:+-H "$token"} \
        -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
        --aws-sigv4 "aws:amz:$region:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
        -o "$2" "$url" || die "cannot download $1 from $store"
      ;;
    *)
      [ -f "$store/$1" ] || die "there is no $1 in $store"
      head -c "$(($3 + 1))" "$store/$1" > "$2"
      ;;
  esac
  [ "$(stat -c %s "$2")" -le "$3" ] || die "$1 is larger than $3 bytes"
}

# verify FILE COMMENT: signed by a trusted key (not a revoked one), with this trusted comment.
verify() {
  for key in "$keys"/*.pub; do
    [ -f "$key" ] || continue
    for revoked in "$keys"/revoked/*.pub; do
      [ -f "$revoked" ] && cmp -s "$key" "$revoked" && continue 2
    done
    said=$(minisign -V -p "$key" -m "$1" -x "$1.minisig" 2>/dev/null) || continue
    printf '%s\n' "$said" | grep -qxF "Trusted comment: $2" && return 0
  done
  die "$(basename "$1") is not signed by a key in $keys with the comment \"$2\""
}

fetch "channels/$channel.json" "$work/pointer.json" 1048576
fetch "channels/$channel.json.minisig" "$work/pointer.json.minisig" 4096
release=$(jq -er .release "$work/pointer.json") || die "channels/$channel.json is damaged"
commit=$(jq -er .commit "$work/pointer.json") || die "channels/$channel.json is damaged"
verify "$work/pointer.json" "hitsave pointer=channels/$channel.json release=$release commit=$commit"
case "$release" in .* | *[!0-9A-Za-z._-]*) die "$release is not a release id" ;; esac

fetch "releases/$release/manifest.json" "$work/manifest.json" 1048576
fetch "releases/$release/manifest.json.minisig" "$work/manifest.json.minisig" 4096
commit_time=$(jq -er .commit_time "$work/manifest.json") || die "the manifest is damaged"
verify "$work/manifest.json" "hitsave release=$release commit=$commit commit_time=$commit_time"
[ "$(jq -r .release "$work/manifest.json")" = "$release" ] || die "the manifest is not release $release's"
sha=$(jq -er '.artifacts[] | select(.component == "xtask") | .sha256' "$work/manifest.json") ||
  die "release $release has no host program"
size=$(jq -er '.artifacts[] | select(.component == "xtask") | .size' "$work/manifest.json")
case "$sha" in *[!0-9a-f]*) die "$sha is not a sha256" ;; esac
[ "${#sha}" -eq 64 ] || die "$sha is not a sha256"

fetch "artifacts/$sha.tar.gz" "$work/xtask.tar.gz" "$size"
echo "$sha  $work/xtask.tar.gz" | sha256sum -c --quiet - || die "the host program does not match the manifest"
mkdir "$work/unpacked"
tar -xzf "$work/xtask.tar.gz" -C "$work/unpacked" --no-same-owner bin/xtask ||
  die "the host program's artifact has no bin/xtask"
install -d -m 0755 "$root" "$root/bin"
install -m 0755 "$work/unpacked/bin/xtask" "$root/bin/.xtask.new"
"$root/bin/.xtask.new" --version > /dev/null || die "the host program does not run here"
mv -f "$root/bin/.xtask.new" "$root/bin/xtask"
printf '%s %s\n' "$sha" "$release" > "$root/bin/xtask.origin"
echo "hitsave-bootstrap: $root/bin/xtask is release $release's host program (signed, sha256 $sha)"
BOOTSTRAP
chmod 0755 /usr/local/sbin/hitsave-bootstrap
HITSAVE_STORE=$HITSAVE_STORE HITSAVE_CHANNEL=$HITSAVE_CHANNEL /usr/local/sbin/hitsave-bootstrap ||
  echo "hitsave: the resident program is not installed yet; run /usr/local/sbin/hitsave-bootstrap once a release is on channel $HITSAVE_CHANNEL" >&2

# The daily backup and its restore drill, by the resident program. Where the
# backups go off the host is the operator's: HITSAVE_STORE=s3://BUCKET/PREFIX in
# /etc/hitsave/backup.env (docs/aws-setup.md); without it they stay on the host.
cat > /etc/systemd/system/hitsave-backup.service <<'UNIT'
[Unit]
Description=HitSave: back up the database, then restore the backup into a throwaway database
Requires=docker.service
After=docker.service

[Service]
Type=oneshot
EnvironmentFile=-/etc/hitsave/backup.env
ExecStart=/opt/hitsave/bin/xtask backup --reason scheduled
ExecStart=/opt/hitsave/bin/xtask backup verify
UNIT
cat > /etc/systemd/system/hitsave-backup.timer <<'UNIT'
[Unit]
Description=HitSave: the daily database backup and restore drill

[Timer]
OnCalendar=*-*-* 03:17:00 UTC
RandomizedDelaySec=30min
Persistent=true

[Install]
WantedBy=timers.target
UNIT
# HTTPS: the install that finds no certificate issues one from Let's Encrypt (HTTP-01 through
# nginx on port 80); this timer renews it when a third of its lifetime is left, twice a day at
# random minutes so a fleet does not hit the CA at once. Settings (HITSAVE_TLS=manual,
# HITSAVE_ACME_EMAIL, ...) come from /etc/hitsave/host.env (docs/aws-setup.md).
cat > /etc/systemd/system/hitsave-tls-renew.service <<'UNIT'
[Unit]
Description=HitSave: renew the HTTPS certificate when it is due
Requires=docker.service
After=docker.service network-online.target

[Service]
Type=oneshot
EnvironmentFile=-/etc/hitsave/host.env
ExecStart=/opt/hitsave/bin/xtask tls renew
UNIT
cat > /etc/systemd/system/hitsave-tls-renew.timer <<'UNIT'
[Unit]
Description=HitSave: check the HTTPS certificate twice a day

[Timer]
OnCalendar=*-*-* 00,12:00:00 UTC
RandomizedDelaySec=4h
Persistent=true

[Install]
WantedBy=timers.target
UNIT
# nginx reaches each app at its container's address: after a reboot, or a restart by Docker's
# policy, a container can come back on another one; this points nginx at the new addresses
# (a no-op when none moved), a minute after boot and every minute.
cat > /etc/systemd/system/hitsave-routes.service <<'UNIT'
[Unit]
Description=HitSave: point nginx at the app containers' current addresses
Requires=docker.service
After=docker.service

[Service]
Type=oneshot
EnvironmentFile=-/etc/hitsave/host.env
ExecStart=/opt/hitsave/bin/xtask routes
UNIT
cat > /etc/systemd/system/hitsave-routes.timer <<'UNIT'
[Unit]
Description=HitSave: check nginx's routes to the app containers every minute

[Timer]
OnBootSec=1min
OnUnitActiveSec=1min

[Install]
WantedBy=timers.target
UNIT
cat > /etc/systemd/system/hitsave-secrets-prune.service <<'UNIT'
[Unit]
Description=HitSave: end the grace periods of rotated secrets that are over
Requires=docker.service
After=docker.service

[Service]
Type=oneshot
EnvironmentFile=-/etc/hitsave/host.env
ExecStart=/opt/hitsave/bin/xtask secrets prune
UNIT
cat > /etc/systemd/system/hitsave-secrets-prune.timer <<'UNIT'
[Unit]
Description=HitSave: remove rotated secrets' previous values when their grace ends, hourly

[Timer]
OnCalendar=hourly
RandomizedDelaySec=10m
Persistent=true

[Install]
WantedBy=timers.target
UNIT
# A preview host (HITSAVE_ENVIRONMENTS=many in host.env) removes the previews of closed pull
# requests (their CodeDeploy group is gone) and the idle ones; elsewhere it does nothing.
cat > /etc/systemd/system/hitsave-env-prune.service <<'UNIT'
[Unit]
Description=HitSave: remove closed pull requests' and idle previews
Requires=docker.service
After=docker.service network-online.target

[Service]
Type=oneshot
ExecStart=/opt/hitsave/bin/xtask env prune
UNIT
cat > /etc/systemd/system/hitsave-env-prune.timer <<'UNIT'
[Unit]
Description=HitSave: look for previews to remove, every quarter of an hour

[Timer]
OnCalendar=*:0/15
RandomizedDelaySec=2m
Persistent=true

[Install]
WantedBy=timers.target
UNIT
systemctl daemon-reload
systemctl enable --now hitsave-backup.timer hitsave-tls-renew.timer hitsave-secrets-prune.timer \
  hitsave-env-prune.timer hitsave-routes.timer
