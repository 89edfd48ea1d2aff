#!/bin/sh
# EC2 user data for a HitSave host (Debian 12 "bookworm" AMI, x86_64 or arm64): Docker Engine
# with Compose v2 from Docker's apt repository, the CodeDeploy agent, and the install root.
# Nothing else: the host gets no toolchain and no AWS CLI; each release brings its own
# xtask. Runs once, as root, at first boot; safe to run again.
set -eu
export DEBIAN_FRONTEND=noninteractive

# The region, from the instance metadata service (IMDSv2).
token=$(curl -sf -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 300" \
  http://169.254.169.254/latest/api/token)
region=$(curl -sf -H "X-aws-ec2-metadata-token: $token" \
  http://169.254.169.254/latest/meta-data/placement/region)

apt-get update -q
apt-get install -y -q ca-certificates curl gnupg ruby-full

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

# The install root. Secrets and TLS files are put there by the operator
# (docs/aws-setup.md), never through user data, which any process on the host can read.
install -d -m 0755 /opt/hitsave
install -d -m 0700 /opt/hitsave/secrets /opt/hitsave/tls

# The daily backup and its restore drill, by the xtask of the deployed bundle. Where the
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
ExecStart=/opt/hitsave/revision/bin/xtask backup --reason scheduled
ExecStart=/opt/hitsave/revision/bin/xtask backup verify
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
ExecStart=/opt/hitsave/revision/bin/xtask tls renew
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
cat > /etc/systemd/system/hitsave-secrets-prune.service <<'UNIT'
[Unit]
Description=HitSave: end the grace periods of rotated secrets that are over
Requires=docker.service
After=docker.service

[Service]
Type=oneshot
EnvironmentFile=-/etc/hitsave/host.env
ExecStart=/opt/hitsave/revision/bin/xtask secrets prune
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
systemctl daemon-reload
systemctl enable --now hitsave-backup.timer hitsave-tls-renew.timer hitsave-secrets-prune.timer
