//! Flags that several verbs share, each group once, and the words of the features' closed
//! sets (`--env`, `--strategy`, `--tls`, `--until`, hook events) as clap value enums. Each
//! group turns into the plain options its feature takes.

use anyhow::Context;
use camino::Utf8PathBuf;

use crate::database::retention::Retention;
use crate::kit::choice::Choice;
use crate::kit::store::StoreLocation;
use crate::release::install::HostOptions;
use crate::release::trust::TrustOptions;
use crate::release::verify::Which;
use crate::site::host::{DEFAULT_ROOT, Host};
use crate::site::settings::{DEFAULT_KEYS, ExternalDb, TlsMode, TlsSettings};
use crate::site::stack::Stack;
use crate::site::swap::Strategy;

/// Offers a [`Choice`] as a clap value enum.
macro_rules! value_enum {
    ($($ty:ty),+) => {$(
        impl clap::ValueEnum for $ty {
            fn value_variants<'a>() -> &'a [Self] {
                <$ty as Choice>::ALL
            }
            fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
                Some(clap::builder::PossibleValue::new(self.word()).help(self.help()))
            }
        }
    )+};
}

value_enum!(
    crate::site::settings::Env,
    Strategy,
    TlsMode,
    crate::release::install::Until,
    crate::codedeploy::hooks::Event,
    crate::database::backup::Reason
);

/// `--root`.
#[derive(clap::Args, Debug, Clone)]
pub struct RootFlag {
    /// The install root.
    #[arg(long, env = "HITSAVE_ROOT", default_value = DEFAULT_ROOT)]
    pub root: Utf8PathBuf,
}

impl RootFlag {
    /// The host and the stack of its current release, or how to install one.
    pub fn current(&self) -> anyhow::Result<(Host, Stack)> {
        let host = Host::open(&self.root)?;
        let current = host.current().with_context(|| {
            format!(
                "nothing is installed under {}: run `{}` first",
                self.root,
                crate::site::host::command("install --store ... --channel ...", &self.root)
            )
        })?;
        let stack = Stack::open(&host.release_dir(&current))?;
        Ok((host, stack))
    }
}

/// Where the artifact store is.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct StoreFlags {
    /// Where artifacts go: a directory, or s3://BUCKET/PREFIX.
    /// [default: <target dir>/hitsave-store]
    #[arg(long, env = "HITSAVE_STORE", value_name = "DIR|s3://BUCKET/PREFIX")]
    pub store: Option<String>,
    /// S3 endpoint for S3-compatible servers (also read from AWS_ENDPOINT_URL).
    #[arg(long, env = "AWS_ENDPOINT_URL", value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Address buckets as https://host/bucket rather than https://bucket.host (most
    /// S3-compatible servers need this).
    #[arg(long, env = "HITSAVE_S3_PATH_STYLE")]
    pub path_style: bool,
}

impl StoreFlags {
    /// The store these flags name.
    pub fn location(&self) -> StoreLocation {
        StoreLocation {
            store: self.store.clone(),
            endpoint_url: self.endpoint_url.clone(),
            path_style: self.path_style,
        }
    }
}

/// Which keys a release must be signed by.
#[derive(clap::Args, Debug, Clone)]
pub struct TrustFlags {
    /// The trusted public keys: minisign .pub files; revoked ones in its revoked/ folder.
    #[arg(long, env = "HITSAVE_KEYS", value_name = "DIR", default_value = DEFAULT_KEYS)]
    pub keys: Utf8PathBuf,
    /// Accept a release published with `cargo xtask release --unsigned` (from a local store
    /// only; history.jsonl says so).
    #[arg(long)]
    pub allow_unsigned: bool,
}

impl TrustFlags {
    /// The options these flags set.
    pub fn options(&self) -> TrustOptions {
        TrustOptions {
            keys: self.keys.clone(),
            allow_unsigned: self.allow_unsigned,
        }
    }
}

/// Which release a command works on: by id, or through a channel or commit pointer.
#[derive(clap::Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["release", "channel", "commit"])))]
pub struct WhichFlags {
    /// The release id.
    #[arg(long, value_name = "ID")]
    pub release: Option<hitsave_schema::ReleaseId>,
    /// The release a channel points at.
    #[arg(long, value_name = "NAME")]
    pub channel: Option<hitsave_schema::Channel>,
    /// The release built from a commit (full sha).
    #[arg(long, value_name = "SHA", value_parser = parse_commit)]
    pub commit: Option<hitsave_schema::Commit>,
}

impl WhichFlags {
    /// The release these flags name (clap requires exactly one).
    pub fn which(&self) -> anyhow::Result<Which> {
        match (&self.release, &self.channel, &self.commit) {
            (Some(id), None, None) => Ok(Which::Release(id.clone())),
            (None, Some(channel), None) => Ok(Which::Channel(channel.clone())),
            (None, None, Some(commit)) => Ok(Which::Commit(commit.clone())),
            _ => anyhow::bail!("name the release with one of --release, --channel or --commit"),
        }
    }
}

/// `--commit`: a full git sha, in either case.
fn parse_commit(sha: &str) -> anyhow::Result<hitsave_schema::Commit> {
    hitsave_schema::Commit::new(sha.to_ascii_lowercase())
        .map_err(|_| anyhow::anyhow!("--commit wants a full 40-character git sha, not {sha:?}"))
}

/// Where the stack lives on the host and how long to wait: install's and rollback's.
#[derive(clap::Args, Debug, Clone)]
pub struct HostFlags {
    /// The install root.
    #[arg(long, env = "HITSAVE_ROOT", default_value = DEFAULT_ROOT)]
    pub root: Utf8PathBuf,
    /// How long to wait for another change (an install, a backup, a restore) to finish.
    #[arg(long, value_name = "SECS", default_value = "600")]
    pub lock_timeout: u64,
    /// How long the new version has to become healthy before the old one is brought back.
    #[arg(long, value_name = "SECS", default_value = "120")]
    pub health_timeout: u64,
    /// How app containers are replaced: blue/green (no request dropped) or in place.
    #[arg(long, value_enum, default_value = "blue-green")]
    pub strategy: Strategy,
    /// Print how long each step took, at the end.
    #[arg(long, env = "HITSAVE_TIMINGS")]
    pub timings: bool,
}

impl HostFlags {
    /// The options these flags set.
    pub fn options(&self) -> HostOptions {
        HostOptions {
            root: self.root.clone(),
            lock_timeout: self.lock_timeout,
            health_timeout: self.health_timeout,
            strategy: self.strategy,
            timings: self.timings,
        }
    }
}

/// How a host gets its certificate; the same flags on `install` and `tls renew`, and the same
/// keys in /etc/hitsave/host.env.
#[derive(clap::Args, Debug, Clone)]
pub struct TlsFlags {
    /// Where the certificate comes from (production and staging).
    #[arg(long = "tls", env = "HITSAVE_TLS", value_enum, default_value = "acme")]
    pub mode: TlsMode,
    /// The ACME directory [default: Let's Encrypt; its staging directory for staging hosts].
    #[arg(long, env = "HITSAVE_ACME_DIRECTORY", value_name = "URL")]
    pub acme_directory: Option<String>,
    /// Contact address for the ACME account (the CA's expiry notices).
    #[arg(long, env = "HITSAVE_ACME_EMAIL", value_name = "EMAIL")]
    pub acme_email: Option<String>,
    /// A PEM root that signs the ACME server's own HTTPS (a test CA such as pebble).
    #[arg(long, env = "HITSAVE_ACME_CA_ROOT", value_name = "FILE")]
    pub acme_ca_root: Option<Utf8PathBuf>,
    /// Renew when fewer than this many days are left [default: a third of the lifetime].
    #[arg(long, env = "HITSAVE_TLS_RENEW_WITHIN", value_name = "DAYS")]
    pub tls_renew_within: Option<f64>,
}

impl TlsFlags {
    /// The settings these flags set.
    pub fn settings(&self) -> TlsSettings {
        TlsSettings {
            mode: self.mode,
            acme_directory: self.acme_directory.clone(),
            acme_email: self.acme_email.clone(),
            acme_ca_root: self.acme_ca_root.clone(),
            tls_renew_within: self.tls_renew_within,
        }
    }
}

/// A database server outside the stack (RDS, or one PostgreSQL a fleet of hosts shares).
#[derive(clap::Args, Debug, Clone)]
pub struct ExternalDbFlags {
    /// The server's host name, as its certificate names it (an RDS endpoint).
    #[arg(long, value_name = "HOST")]
    pub db_host: Option<String>,
    /// The server's port.
    #[arg(
        long,
        value_name = "PORT",
        default_value = "5432",
        requires = "db_host"
    )]
    pub db_port: u16,
    /// The database the apps use.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "hitsave",
        requires = "db_host"
    )]
    pub db_name: String,
    /// The role the apps log in as.
    #[arg(
        long,
        value_name = "USER",
        default_value = "hitsave",
        requires = "db_host"
    )]
    pub db_user: String,
    /// The CA bundle the server's certificate must chain to (for RDS, the region's bundle
    /// from AWS); required with --db-host.
    #[arg(long, value_name = "FILE", requires = "db_host")]
    pub db_ca_file: Option<Utf8PathBuf>,
    /// An existing Docker network the apps join to reach the server (a PostgreSQL in a
    /// container on this host); RDS needs none.
    #[arg(long, value_name = "NETWORK", requires = "db_host")]
    pub db_network: Option<String>,
}

impl ExternalDbFlags {
    /// The settings these flags set.
    pub fn settings(&self) -> ExternalDb {
        ExternalDb {
            db_host: self.db_host.clone(),
            db_port: self.db_port,
            db_name: self.db_name.clone(),
            db_user: self.db_user.clone(),
            db_ca_file: self.db_ca_file.clone(),
            db_network: self.db_network.clone(),
        }
    }
}

/// How many backups are kept.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct RetentionFlags {
    /// Keep the newest N backups ...
    #[arg(long, default_value = "7", value_name = "N")]
    pub keep: usize,
    /// ... and the newest of each UTC day for the last D days.
    #[arg(long, default_value = "14", value_name = "D")]
    pub days: u64,
}

impl RetentionFlags {
    /// The retention these flags set.
    pub fn retention(self) -> Retention {
        Retention {
            keep: self.keep,
            days: self.days,
        }
    }
}

/// The watch after a cutover (`install`, `rollback`): how long, and what fails a release.
#[derive(clap::Args, Debug, Clone)]
pub struct WatchFlags {
    /// Seconds to watch the release after its cutover (5xx rate and p99 against the release
    /// before it, from nginx's access log), rolling back when it fails; 0: no watch.
    #[arg(
        long,
        value_name = "SECS",
        env = "HITSAVE_WATCH_SECONDS",
        default_value_t = 60
    )]
    watch: u64,
    /// Percentage points by which the release's 5xx rate may pass the one before it.
    #[arg(
        long,
        value_name = "POINTS",
        env = "HITSAVE_WATCH_MAX_5XX",
        default_value_t = 2.0
    )]
    watch_max_5xx: f64,
    /// How many times the p99 of the release before it this one may reach.
    #[arg(
        long,
        value_name = "FACTOR",
        env = "HITSAVE_WATCH_P99_FACTOR",
        default_value_t = 3.0
    )]
    watch_p99_factor: f64,
}

impl WatchFlags {
    /// As the features take them.
    pub fn settings(&self) -> crate::site::settings::WatchSettings {
        crate::site::settings::WatchSettings {
            seconds: self.watch,
            max_5xx_points: self.watch_max_5xx,
            p99_factor: self.watch_p99_factor,
        }
    }
}
