//! What this host is configured to be: its environment and the base images it builds on.

use std::time::Duration;

use anyhow::Context;
use camino::Utf8PathBuf;

use crate::kit::choice::Choice;

/// Which deployment a host is: picks the domain, the ports and TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Env {
    /// hitsave.io on 0.0.0.0:80 and :443.
    Production,
    /// staging.hitsave.io, like production.
    Staging,
    /// hitsave-local.io on 127.0.0.1 without TLS (tests, a laptop).
    Local,
    /// One pull request's environment (`preview-42`) at `pr-42.<preview domain>`, beside
    /// others on a preview host.
    Preview,
}

crate::choice!(Env {
    Production => "production", "hitsave.io on 0.0.0.0:80 and :443 with TLS";
    Staging => "staging", "staging.hitsave.io, like production";
    Local => "local", "hitsave-local.io on 127.0.0.1 without TLS (tests, a laptop)";
    Preview => "preview", "one pull request's environment at pr-<N>.<preview domain>, with TLS";
});

impl Env {
    /// As `--env` and release.env's HITSAVE_ENV spell it.
    pub fn name(self) -> &'static str {
        Choice::word(self)
    }

    /// The environment `name` spells, or an error listing them.
    pub fn parse(name: &str) -> anyhow::Result<Env> {
        <Env as Choice>::parse(name).map_err(|_| {
            anyhow::anyhow!(
                "{name:?} is not an environment: use production, staging, local or preview"
            )
        })
    }

    /// The domain the site serves; a preview's is its own (`pr-<N>.<preview domain>`).
    pub fn domain(self) -> Option<&'static str> {
        match self {
            Env::Production => Some("hitsave.io"),
            Env::Staging => Some("staging.hitsave.io"),
            Env::Local => Some("hitsave-local.io"),
            Env::Preview => None,
        }
    }
    pub fn tls(self) -> bool {
        self != Env::Local
    }
}

/// Base images: the official ones, or the local equivalents (deploy/base-images).
pub fn base_images(local: bool) -> [(&'static str, &'static str); 4] {
    if local {
        [
            ("HITSAVE_RUNTIME_BASE", "hitsave-base/debian:bookworm"),
            ("HITSAVE_NODE_BASE", "hitsave-base/node:20"),
            ("HITSAVE_POSTGRES_IMAGE", "hitsave-base/postgres:15"),
            ("HITSAVE_NGINX_IMAGE", "hitsave-base/nginx:bookworm"),
        ]
    } else {
        [
            ("HITSAVE_RUNTIME_BASE", "debian:bookworm-slim"),
            ("HITSAVE_NODE_BASE", "node:22-bookworm-slim"),
            ("HITSAVE_POSTGRES_IMAGE", "postgres:15-bookworm"),
            ("HITSAVE_NGINX_IMAGE", "nginx:1.27-bookworm"),
        ]
    }
}

/// Let's Encrypt's directories.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// Where a host's certificate comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Issued and renewed by xtask through ACME.
    Acme,
    /// Placed in <root>/tls/ by the operator; never replaced.
    Manual,
}

crate::choice!(TlsMode {
    Acme => "acme", "issued and renewed by xtask through ACME";
    Manual => "manual", "placed in <root>/tls/ by the operator; never replaced";
});

/// How a host gets its certificate: `install`'s and `tls renew`'s flags, host.env's keys.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Where the certificate comes from (production and staging).
    pub mode: TlsMode,
    /// The ACME directory [default: Let's Encrypt; its staging directory for staging hosts].
    pub acme_directory: Option<String>,
    /// Contact address for the ACME account (the CA's expiry notices).
    pub acme_email: Option<String>,
    /// A PEM root that signs the ACME server's own HTTPS (a test CA such as pebble).
    pub acme_ca_root: Option<Utf8PathBuf>,
    /// Renew when fewer than this many days are left [default: a third of the lifetime].
    pub tls_renew_within: Option<f64>,
}

impl TlsSettings {
    /// The ACME directory: the one named, else Let's Encrypt's (its staging one for staging).
    pub fn directory(&self, env: Env) -> &str {
        match (&self.acme_directory, env) {
            (Some(url), _) => url,
            (None, Env::Staging) => LETS_ENCRYPT_STAGING,
            (None, _) => LETS_ENCRYPT,
        }
    }
}

/// A database server outside the stack (RDS, or one PostgreSQL a fleet of hosts shares): the
/// stack then starts no db container and logs in over TLS, verified against `--db-ca-file`.
/// The password is the stack's postgres_password secret file, as for its own database.
#[derive(Debug, Clone)]
pub struct ExternalDb {
    /// The server's host name, as its certificate names it (an RDS endpoint).
    pub db_host: Option<String>,
    /// The server's port.
    pub db_port: u16,
    /// The database the apps use.
    pub db_name: String,
    /// The role the apps log in as.
    pub db_user: String,
    /// The CA bundle the server's certificate must chain to (for RDS, the region's bundle
    /// from AWS); required with --db-host.
    pub db_ca_file: Option<Utf8PathBuf>,
    /// An existing Docker network the apps join to reach the server (a PostgreSQL in a
    /// container on this host); RDS needs none.
    pub db_network: Option<String>,
}

impl ExternalDb {
    /// The release.env settings of the external database, or none for the stack's own.
    pub fn settings(&self) -> anyhow::Result<Vec<(&'static str, String)>> {
        let Some(host) = &self.db_host else {
            return Ok(Vec::new());
        };
        let ca = self.db_ca_file.as_ref().with_context(|| {
            format!("--db-host {host} needs --db-ca-file (HITSAVE_DB_CA_FILE): the CA bundle its certificate is checked against; nothing was changed")
        })?;
        let pem = std::fs::read_to_string(ca).with_context(|| {
            format!("cannot read the database's CA bundle {ca} (HITSAVE_DB_CA_FILE); nothing was changed")
        })?;
        anyhow::ensure!(
            pem.contains("-----BEGIN CERTIFICATE-----"),
            "{ca} (HITSAVE_DB_CA_FILE) holds no PEM certificate; nothing was changed"
        );
        let ca = ca
            .canonicalize_utf8()
            .with_context(|| format!("cannot resolve {ca}"))?;
        let mut settings = vec![
            ("HITSAVE_DB_HOST", host.clone()),
            ("HITSAVE_DB_PORT", self.db_port.to_string()),
            ("HITSAVE_DB_NAME", self.db_name.clone()),
            ("HITSAVE_DB_USER", self.db_user.clone()),
            ("HITSAVE_DB_CA_FILE", ca.to_string()),
        ];
        if let Some(network) = &self.db_network {
            settings.push(("HITSAVE_DB_NETWORK", network.clone()));
        }
        Ok(settings)
    }
}

impl Default for ExternalDb {
    fn default() -> ExternalDb {
        ExternalDb {
            db_host: None,
            db_port: 5432,
            db_name: "hitsave".into(),
            db_user: "hitsave".into(),
            db_ca_file: None,
            db_network: None,
        }
    }
}

/// How long to watch and what fails a release (host.env HITSAVE_WATCH_*).
#[derive(Debug, Clone, Copy)]
pub struct WatchSettings {
    /// Seconds to watch after the cutover; 0 turns the watch off.
    pub seconds: u64,
    /// Percentage points by which the new 5xx rate may pass the old one.
    pub max_5xx_points: f64,
    /// How many times the old p99 the new one may reach.
    pub p99_factor: f64,
}

impl Default for WatchSettings {
    fn default() -> WatchSettings {
        WatchSettings {
            seconds: 60,
            max_5xx_points: 2.0,
            p99_factor: 3.0,
        }
    }
}

/// Where notifications go, and how long sending them may take in all.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// HITSAVE_NOTIFY_WEBHOOK: a Slack-compatible incoming webhook (or any JSON receiver).
    pub webhook: Option<String>,
    /// HITSAVE_NOTIFY_SNS_TOPIC: an SNS topic ARN (the instance role may publish to it).
    pub sns_topic: Option<String>,
    /// HITSAVE_NOTIFY_TIMEOUT: seconds for all attempts at all targets.
    pub timeout: Duration,
    /// HITSAVE_NOTIFY_DISK_PERCENT: the install root's disk is reported above this [85].
    pub disk_percent: f64,
}

impl Default for NotifySettings {
    fn default() -> NotifySettings {
        NotifySettings {
            webhook: None,
            sns_topic: None,
            timeout: Duration::from_secs(5),
            disk_percent: 85.0,
        }
    }
}

/// Where the containers' logs go besides the host: a CloudWatch Logs group (HITSAVE_LOGS_*).
#[derive(Debug, Clone, Default)]
pub struct LogsSettings {
    /// HITSAVE_LOGS_GROUP: the group, one per environment (`hitsave-production`).
    pub group: Option<String>,
    /// HITSAVE_LOGS_REGION: its region.
    pub region: Option<String>,
    /// HITSAVE_LOGS_ENDPOINT: another endpoint than the region's (a VPC endpoint, a test's).
    pub endpoint: Option<String>,
}

impl LogsSettings {
    /// With the group's region and endpoint.
    fn located(self, region: Option<String>, endpoint: Option<String>) -> LogsSettings {
        LogsSettings {
            region,
            endpoint,
            ..self
        }
    }

    /// The release.env settings of the logs overlay; none when no group is named.
    pub fn settings(&self) -> anyhow::Result<Vec<(&'static str, String)>> {
        let Some(group) = &self.group else {
            return Ok(Vec::new());
        };
        let region = self.region.clone().with_context(|| {
            format!("the logs go to CloudWatch group {group}, but no region is named: set HITSAVE_LOGS_REGION (--logs-region); nothing was changed")
        })?;
        let mut settings = vec![
            ("HITSAVE_LOGS_GROUP", group.clone()),
            ("HITSAVE_LOGS_REGION", region),
        ];
        if let Some(endpoint) = &self.endpoint {
            settings.push(("HITSAVE_LOGS_ENDPOINT", endpoint.clone()));
        }
        Ok(settings)
    }
}

/// The trusted release keys when none are named.
pub const DEFAULT_KEYS: &str = "/etc/hitsave/keys";

/// Where a host's settings file is when none is named.
pub const HOST_SETTINGS: &str = "/etc/hitsave/host.env";

/// `/etc/hitsave/host.env`: what this host is beyond the defaults, as `KEY=VALUE` lines
/// (`#` comments, blank lines). Read once, checked whole (an unknown key or a bad value is
/// refused, naming the line), and used by the CodeDeploy hooks for every step of an install,
/// so a value means the same there as the flag of the same name means to `xtask install`. A
/// key the file does not set is taken from the environment, as the flags do.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// HITSAVE_ROOT: the install root.
    pub root: Utf8PathBuf,
    /// HITSAVE_PROJECT: the compose project name.
    pub project: String,
    /// HITSAVE_BIND: the address nginx's ports are published on.
    pub bind: Option<std::net::IpAddr>,
    /// HITSAVE_HTTP_PORT: nginx's HTTP port on the host.
    pub http_port: Option<u16>,
    /// HITSAVE_HTTPS_PORT: nginx's HTTPS port on the host.
    pub https_port: Option<u16>,
    /// HITSAVE_LOCAL_BASE_IMAGES: build on the base images made from Debian's packages.
    pub local_base_images: bool,
    /// HITSAVE_HEALTH_TIMEOUT: seconds a new version has to become healthy.
    pub health_timeout: u64,
    /// HITSAVE_KEYS: the trusted release keys.
    pub keys: Utf8PathBuf,
    /// HITSAVE_TLS, HITSAVE_ACME_*, HITSAVE_TLS_RENEW_WITHIN: the certificate.
    pub tls: TlsSettings,
    /// HITSAVE_HSTS_MAX_AGE: Strict-Transport-Security's max-age.
    pub hsts_max_age: Option<u64>,
    /// HITSAVE_DB_*: an external database server.
    pub db: ExternalDb,
    /// HITSAVE_LB_HEALTH_WAIT: seconds the load balancer takes to see a failing health check.
    pub lb_health_wait: u64,
    /// HITSAVE_BRANCHES: the branches whose releases this host takes (`main,release/*`).
    pub branches: Option<Vec<String>>,
    /// HITSAVE_ALLOW_DOWNGRADE: an older release than the newest installed is taken.
    pub allow_downgrade: bool,
    /// HITSAVE_WATCH_SECONDS, HITSAVE_WATCH_MAX_5XX, HITSAVE_WATCH_P99_FACTOR: the watch after
    /// a cutover.
    pub watch: WatchSettings,
    /// HITSAVE_LOGS_GROUP, HITSAVE_LOGS_REGION, HITSAVE_LOGS_ENDPOINT: CloudWatch Logs.
    pub logs: LogsSettings,
    /// HITSAVE_DATA_DIR: the data volume's mount point (the user data names it); the
    /// database's files go under it, off the root disk.
    pub data_dir: Option<Utf8PathBuf>,
    /// HITSAVE_NOTIFY_WEBHOOK, HITSAVE_NOTIFY_SNS_TOPIC, HITSAVE_NOTIFY_TIMEOUT: where the
    /// team is told about deploys, failures and the disk.
    pub notify: NotifySettings,
    /// HITSAVE_ENVIRONMENTS, HITSAVE_PREVIEW_*, HITSAVE_ENV_PORTS: one environment, or
    /// several behind a front (a preview host).
    pub environments: Environments,
}

/// How many environments a host runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One, in the install root, its nginx on the host's ports (production, staging).
    One,
    /// Several (staging, `preview-<N>`), each under `<root>/envs/<name>/` with its nginx on
    /// 127.0.0.1, behind one front on the host's ports.
    Many,
}

crate::choice!(Layout {
    One => "one", "one environment in the install root, on the host's ports";
    Many => "many", "several under <root>/envs/, behind one front on the host's ports";
});

/// A preview host's settings: its environments and their limits.
#[derive(Debug, Clone)]
pub struct Environments {
    /// HITSAVE_ENVIRONMENTS: one (default) or many.
    pub layout: Layout,
    /// HITSAVE_PREVIEW_DOMAIN: previews serve `pr-<N>.<this>` (a wildcard DNS record).
    pub preview_domain: Option<String>,
    /// HITSAVE_PREVIEW_MAX: at most this many previews at once [default: 4].
    pub preview_max: usize,
    /// HITSAVE_PREVIEW_MEMORY: MiB one preview's containers may use together [default: 768].
    pub preview_memory_mib: u64,
    /// HITSAVE_PREVIEW_IDLE_DAYS: a preview not deployed for this long is removed [default: 7].
    pub preview_idle_days: f64,
    /// HITSAVE_ENV_PORTS: the first 127.0.0.1 port given to environments [default: 20000].
    pub first_port: u16,
}

/// Every key host.env may set.
pub const HOST_SETTING_KEYS: &[&str] = &[
    "HITSAVE_ROOT",
    "HITSAVE_PROJECT",
    "HITSAVE_BIND",
    "HITSAVE_HTTP_PORT",
    "HITSAVE_HTTPS_PORT",
    "HITSAVE_LOCAL_BASE_IMAGES",
    "HITSAVE_HEALTH_TIMEOUT",
    "HITSAVE_KEYS",
    "HITSAVE_TLS",
    "HITSAVE_ACME_DIRECTORY",
    "HITSAVE_ACME_EMAIL",
    "HITSAVE_ACME_CA_ROOT",
    "HITSAVE_TLS_RENEW_WITHIN",
    "HITSAVE_HSTS_MAX_AGE",
    "HITSAVE_DB_HOST",
    "HITSAVE_DB_PORT",
    "HITSAVE_DB_NAME",
    "HITSAVE_DB_USER",
    "HITSAVE_DB_CA_FILE",
    "HITSAVE_DB_NETWORK",
    "HITSAVE_LB_HEALTH_WAIT",
    "HITSAVE_BRANCHES",
    "HITSAVE_ALLOW_DOWNGRADE",
    "HITSAVE_WATCH_SECONDS",
    "HITSAVE_WATCH_MAX_5XX",
    "HITSAVE_WATCH_P99_FACTOR",
    "HITSAVE_LOGS_GROUP",
    "HITSAVE_LOGS_REGION",
    "HITSAVE_LOGS_ENDPOINT",
    "HITSAVE_DATA_DIR",
    "HITSAVE_NOTIFY_WEBHOOK",
    "HITSAVE_NOTIFY_SNS_TOPIC",
    "HITSAVE_NOTIFY_TIMEOUT",
    "HITSAVE_NOTIFY_DISK_PERCENT",
    "HITSAVE_ENVIRONMENTS",
    "HITSAVE_PREVIEW_DOMAIN",
    "HITSAVE_PREVIEW_MAX",
    "HITSAVE_PREVIEW_MEMORY",
    "HITSAVE_PREVIEW_IDLE_DAYS",
    "HITSAVE_ENV_PORTS",
];

/// `1`, `true`, `yes`, `on` or `0`, `false`, `no`, `off`, empty.
pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(format!("{value:?} is not true or false (use 1 or 0)")),
    }
}

impl HostSettings {
    /// The settings in `path` (none when there is no file), else the environment, else the
    /// defaults.
    pub fn read(path: &camino::Utf8Path) -> anyhow::Result<HostSettings> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {path}")),
        };
        let mut file = std::collections::BTreeMap::new();
        for line in crate::kit::env_file::parse(path, &text)? {
            anyhow::ensure!(
                HOST_SETTING_KEYS.contains(&line.key.as_str()),
                "{path}:{}: unknown setting {}; the settings are {}",
                line.number,
                line.key,
                HOST_SETTING_KEYS.join(", ")
            );
            file.insert(line.key, (line.number, line.value));
        }
        HostSettings::from_lookup(&|key| match file.get(key) {
            Some((number, value)) => Some((format!("{path}:{number}"), value.clone())),
            None => std::env::var(key)
                .ok()
                .map(|value| ("the environment".to_owned(), value)),
        })
    }

    /// The defaults: what a host without host.env and without HITSAVE_* variables is.
    pub fn defaults() -> HostSettings {
        HostSettings::from_lookup(&|_| None).expect("the defaults are valid")
    }

    /// The settings `lookup` gives: each key's value and where it was found.
    fn from_lookup(lookup: &Lookup<'_>) -> anyhow::Result<HostSettings> {
        let text = |key: &str| lookup(key).map(|(_, v)| v).filter(|v| !v.is_empty());
        let seconds = |key| {
            typed(lookup, key, |v| {
                v.parse::<u64>()
                    .map_err(|_| "not a whole number of seconds".into())
            })
        };
        let port = |key| {
            typed(lookup, key, |v| {
                v.parse::<u16>()
                    .map_err(|_| "not a port (0 to 65535)".into())
            })
        };
        let boolean =
            |key| Ok::<_, anyhow::Error>(typed(lookup, key, parse_bool)?.unwrap_or(false));
        let db_host = text("HITSAVE_DB_HOST");
        if db_host.is_none()
            && let Some((key, (place, _))) = HOST_SETTING_KEYS
                .iter()
                .filter(|k| k.starts_with("HITSAVE_DB_"))
                .find_map(|k| lookup(k).map(|found| (k, found)))
        {
            anyhow::bail!(
                "{place}: {key} is set but HITSAVE_DB_HOST is not: set both, or neither; nothing was changed"
            );
        }
        let defaults = ExternalDb::default();
        Ok(HostSettings {
            root: text("HITSAVE_ROOT")
                .unwrap_or_else(|| crate::site::host::DEFAULT_ROOT.into())
                .into(),
            project: text("HITSAVE_PROJECT").unwrap_or_else(|| "hitsave".into()),
            bind: typed(lookup, "HITSAVE_BIND", |v| {
                v.parse::<std::net::IpAddr>()
                    .map_err(|_| "not an IP address".into())
            })?,
            http_port: port("HITSAVE_HTTP_PORT")?,
            https_port: port("HITSAVE_HTTPS_PORT")?,
            local_base_images: boolean("HITSAVE_LOCAL_BASE_IMAGES")?,
            health_timeout: seconds("HITSAVE_HEALTH_TIMEOUT")?.unwrap_or(120),
            keys: text("HITSAVE_KEYS")
                .unwrap_or_else(|| DEFAULT_KEYS.into())
                .into(),
            tls: tls(lookup)?,
            hsts_max_age: seconds("HITSAVE_HSTS_MAX_AGE")?,
            db: ExternalDb {
                db_port: port("HITSAVE_DB_PORT")?.unwrap_or(defaults.db_port),
                db_name: text("HITSAVE_DB_NAME").unwrap_or(defaults.db_name),
                db_user: text("HITSAVE_DB_USER").unwrap_or(defaults.db_user),
                db_ca_file: text("HITSAVE_DB_CA_FILE").map(Into::into),
                db_network: text("HITSAVE_DB_NETWORK"),
                db_host,
            },
            lb_health_wait: seconds("HITSAVE_LB_HEALTH_WAIT")?.unwrap_or(0),
            branches: text("HITSAVE_BRANCHES").map(|list| {
                list.split(',')
                    .map(|b| b.trim().to_owned())
                    .filter(|b| !b.is_empty())
                    .collect()
            }),
            allow_downgrade: boolean("HITSAVE_ALLOW_DOWNGRADE")?,
            watch: watch(lookup)?,
            logs: LogsSettings {
                group: text("HITSAVE_LOGS_GROUP"),
                ..LogsSettings::default()
            }
            .located(text("HITSAVE_LOGS_REGION"), text("HITSAVE_LOGS_ENDPOINT")),
            data_dir: typed(lookup, "HITSAVE_DATA_DIR", |v| {
                let dir = Utf8PathBuf::from(v);
                if dir.is_absolute() {
                    Ok(dir)
                } else {
                    Err("not an absolute path".into())
                }
            })?,
            notify: notify(lookup)?,
            environments: environments(lookup)?,
        })
    }
}

/// How the host gets its certificate.
fn tls(lookup: &Lookup<'_>) -> anyhow::Result<TlsSettings> {
    let text = |key: &str| lookup(key).map(|(_, v)| v).filter(|v| !v.is_empty());
    Ok(TlsSettings {
        mode: typed(lookup, "HITSAVE_TLS", TlsMode::parse)?.unwrap_or(TlsMode::Acme),
        acme_directory: text("HITSAVE_ACME_DIRECTORY"),
        acme_email: text("HITSAVE_ACME_EMAIL"),
        acme_ca_root: text("HITSAVE_ACME_CA_ROOT").map(Into::into),
        tls_renew_within: typed(lookup, "HITSAVE_TLS_RENEW_WITHIN", |v| {
            v.parse::<f64>()
                .ok()
                .filter(|d| d.is_finite() && *d >= 0.0)
                .ok_or_else(|| "not a number of days".into())
        })?,
    })
}

/// Where the team is told.
fn notify(lookup: &Lookup<'_>) -> anyhow::Result<NotifySettings> {
    let seconds = |key| {
        typed(lookup, key, |v| {
            v.parse::<u64>()
                .map_err(|_| "not a whole number of seconds".into())
        })
    };
    Ok(NotifySettings {
        webhook: typed(lookup, "HITSAVE_NOTIFY_WEBHOOK", |v| {
            (v.starts_with("https://") || v.starts_with("http://"))
                .then(|| v.to_owned())
                .ok_or_else(|| "not an http(s) URL".into())
        })?
        .filter(|v| !v.is_empty()),
        sns_topic: typed(lookup, "HITSAVE_NOTIFY_SNS_TOPIC", |v| {
            v.starts_with("arn:aws:sns:")
                .then(|| v.to_owned())
                .ok_or_else(|| "not an SNS topic ARN (arn:aws:sns:...)".into())
        })?,
        timeout: Duration::from_secs(seconds("HITSAVE_NOTIFY_TIMEOUT")?.unwrap_or(5)),
        disk_percent: typed(lookup, "HITSAVE_NOTIFY_DISK_PERCENT", |v| {
            v.parse::<f64>()
                .ok()
                .filter(|p| (0.0..=100.0).contains(p))
                .ok_or_else(|| "not a percentage (0 to 100)".into())
        })?
        .unwrap_or(85.0),
    })
}

/// The watch after a cutover.
fn watch(lookup: &Lookup<'_>) -> anyhow::Result<WatchSettings> {
    let defaults = WatchSettings::default();
    let positive = |key, what: &'static str| {
        typed(lookup, key, move |v| {
            v.parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n > 0.0)
                .ok_or_else(|| format!("not {what}"))
        })
    };
    Ok(WatchSettings {
        seconds: typed(lookup, "HITSAVE_WATCH_SECONDS", |v| {
            v.parse::<u64>()
                .ok()
                .filter(|s| *s <= 240)
                .ok_or_else(|| {
                    "not a number of seconds up to 240 (0: no watch; CodeDeploy gives ValidateService 300 s)".into()
                })
        })?
        .unwrap_or(defaults.seconds),
        max_5xx_points: positive("HITSAVE_WATCH_MAX_5XX", "a number of percentage points")?
            .unwrap_or(defaults.max_5xx_points),
        p99_factor: positive("HITSAVE_WATCH_P99_FACTOR", "a factor (3 = three times)")?
            .unwrap_or(defaults.p99_factor),
    })
}

/// The preview host's settings; a preview domain must be a host name.
fn environments(lookup: &Lookup<'_>) -> anyhow::Result<Environments> {
    let whole = |key, what: &'static str| {
        typed(lookup, key, move |v| {
            v.parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("not {what}"))
        })
    };
    let memory = typed(lookup, "HITSAVE_PREVIEW_MEMORY", |v| {
        let (number, unit) = match v.strip_suffix(['g', 'G']) {
            Some(n) => (n, 1024),
            None => (v.trim_end_matches(['m', 'M']), 1),
        };
        number
            .parse::<u64>()
            .ok()
            .map(|n| n * unit)
            .filter(|mib| *mib >= 256)
            .ok_or_else(|| "not a memory size of at least 256m (768m, 1g)".into())
    })?;
    let domain = typed(lookup, "HITSAVE_PREVIEW_DOMAIN", |v| {
        let ok = v.len() <= 200
            && v.split('.').count() >= 2
            && v.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        ok.then(|| v.to_ascii_lowercase())
            .ok_or_else(|| "not a domain (preview.hitsave.io)".into())
    })?;
    Ok(Environments {
        layout: typed(lookup, "HITSAVE_ENVIRONMENTS", Layout::parse)?.unwrap_or(Layout::One),
        preview_domain: domain.filter(|d| !d.is_empty()),
        preview_max: whole(
            "HITSAVE_PREVIEW_MAX",
            "a number of environments (1 or more)",
        )?
        .map_or(4, |n| n as usize),
        preview_memory_mib: memory.unwrap_or(768),
        preview_idle_days: typed(lookup, "HITSAVE_PREVIEW_IDLE_DAYS", |v| {
            v.parse::<f64>()
                .ok()
                .filter(|d| d.is_finite() && *d > 0.0)
                .ok_or_else(|| "not a number of days".into())
        })?
        .unwrap_or(7.0),
        first_port: typed(lookup, "HITSAVE_ENV_PORTS", |v| {
            v.parse::<u16>()
                .ok()
                .filter(|p| (1024..=60000).contains(p))
                .ok_or_else(|| "not a port from 1024 to 60000".into())
        })?
        .unwrap_or(20000),
    })
}

/// A setting's value and where it was found (`host.env:3`, `the environment`).
type Lookup<'a> = dyn Fn(&str) -> Option<(String, String)> + 'a;

/// `key`'s value parsed by `parse`, none when unset; a value `parse` refuses is an error naming
/// where it was found.
fn typed<T>(
    lookup: &Lookup<'_>,
    key: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> anyhow::Result<Option<T>> {
    match lookup(key) {
        None => Ok(None),
        Some((place, value)) => parse(value.trim())
            .map(Some)
            .map_err(|why| anyhow::anyhow!("{place}: {key}={value:?}: {why}; nothing was changed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(lines: &[(&str, &str)]) -> anyhow::Result<HostSettings> {
        let lines: Vec<(String, String)> = lines
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        HostSettings::from_lookup(&move |key| {
            lines
                .iter()
                .position(|(k, _)| k == key)
                .map(|i| (format!("host.env:{}", i + 1), lines[i].1.clone()))
        })
    }

    #[test]
    fn defaults_values_and_refusals() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.root, crate::site::host::DEFAULT_ROOT);
        assert_eq!((s.health_timeout, s.lb_health_wait), (120, 0));
        assert_eq!(s.tls.mode, TlsMode::Acme);
        assert!(s.db.db_host.is_none() && !s.allow_downgrade && s.branches.is_none());
        let s = settings(&[
            ("HITSAVE_HTTP_PORT", "8080"),
            ("HITSAVE_LOCAL_BASE_IMAGES", "1"),
            ("HITSAVE_TLS", "manual"),
            ("HITSAVE_BRANCHES", "main, release/*"),
            ("HITSAVE_BIND", "127.0.0.1"),
            ("HITSAVE_DATA_DIR", "/var/lib/hitsave-data"),
        ])
        .unwrap();
        assert_eq!(s.http_port, Some(8080));
        assert_eq!(s.data_dir.unwrap(), "/var/lib/hitsave-data");
        assert!(s.local_base_images);
        assert_eq!(s.tls.mode, TlsMode::Manual);
        assert_eq!(s.branches.unwrap(), ["main", "release/*"]);
        for (key, value, why) in [
            (
                "HITSAVE_HEALTH_TIMEOUT",
                "2m",
                "not a whole number of seconds",
            ),
            ("HITSAVE_HTTP_PORT", "80000", "not a port"),
            ("HITSAVE_LOCAL_BASE_IMAGES", "maybe", "not true or false"),
            ("HITSAVE_TLS", "letsencrypt", "not one of acme, manual"),
            ("HITSAVE_BIND", "localhost", "not an IP address"),
            ("HITSAVE_DATA_DIR", "data", "not an absolute path"),
            ("HITSAVE_DB_PORT", "5433", "HITSAVE_DB_HOST is not"),
        ] {
            let err = settings(&[(key, value)]).unwrap_err().to_string();
            assert!(
                err.starts_with("host.env:1: ")
                    && err.contains(why)
                    && err.contains("nothing was changed"),
                "{key}={value}: {err}"
            );
        }
    }

    #[test]
    fn files_are_read_whole_and_unknown_keys_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = camino::Utf8PathBuf::from_path_buf(dir.path().join("host.env")).unwrap();
        assert_eq!(HostSettings::read(&path).unwrap().project, "hitsave");
        std::fs::write(
            &path,
            "# a host\nHITSAVE_PROJECT=shop\n\nHITSAVE_HTTP_PORT = \"8080\"\n",
        )
        .unwrap();
        let s = HostSettings::read(&path).unwrap();
        assert_eq!((s.project.as_str(), s.http_port), ("shop", Some(8080)));
        std::fs::write(&path, "HITSAVE_PASSWORD=x\n").unwrap();
        let err = HostSettings::read(&path).unwrap_err().to_string();
        assert!(err.contains("unknown setting HITSAVE_PASSWORD"), "{err}");
        std::fs::write(&path, "just words\n").unwrap();
        let err = HostSettings::read(&path).unwrap_err().to_string();
        assert!(err.contains(":1: expected KEY=VALUE"), "{err}");
        std::fs::write(&path, "HITSAVE_PROJECT=shop\nHITSAVE_HEALTH_TIMEOUT=soon\n").unwrap();
        let err = HostSettings::read(&path).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{path}:2: HITSAVE_HEALTH_TIMEOUT")),
            "{err}"
        );
    }
}
