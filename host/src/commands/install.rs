//! `xtask install`: fetch, verify, unpack and run a release on this host (`release::install`).

use crate::commands::flags::WatchFlags;
use crate::commands::flags::{
    ExternalDbFlags, HostFlags, StoreFlags, TlsFlags, TrustFlags, WhichFlags,
};
use crate::release::install::{InstallOptions, Until};
use crate::site::settings::Env;

/// `install`'s flags.
#[derive(clap::Args)]
pub struct InstallArgs {
    #[command(flatten)]
    store: StoreFlags,
    #[command(flatten)]
    which: WhichFlags,
    #[command(flatten)]
    trust: TrustFlags,
    /// Install what --channel names even when it is older than the newest release this host
    /// installed from that channel (a channel that goes back in time is refused otherwise: it
    /// may be an attacker replaying an old, vulnerable release).
    #[arg(long)]
    allow_downgrade: bool,
    #[command(flatten)]
    host: HostFlags,
    #[command(flatten)]
    tls: TlsFlags,
    /// Which deployment this host is: picks the domain, the ports and TLS.
    #[arg(long, value_enum, default_value = "production")]
    env: Env,
    /// The compose project name (containers are <project>-<service>-N).
    #[arg(long, env = "HITSAVE_PROJECT", default_value = "hitsave")]
    project: String,
    /// The host address nginx's ports are published on [default: 0.0.0.0; local: 127.0.0.1].
    #[arg(long, value_name = "ADDRESS")]
    bind: Option<std::net::IpAddr>,
    /// The host port nginx serves HTTP on [default: 80; local: 8080].
    #[arg(long, value_name = "PORT")]
    http_port: Option<u16>,
    /// The host port nginx serves HTTPS on [default: 443; local: 8443].
    #[arg(long, value_name = "PORT")]
    https_port: Option<u16>,
    /// Build on the base images `cargo xtask images` makes from Debian's packages, for hosts
    /// that reach no registry; otherwise the official images.
    #[arg(long, env = "HITSAVE_LOCAL_BASE_IMAGES")]
    local_base_images: bool,
    #[command(flatten)]
    db: ExternalDbFlags,
    /// The CloudWatch Logs group every container logs to besides the host (Docker's awslogs
    /// driver; the group is made by the AWS setup, one per environment).
    #[arg(long, value_name = "GROUP", env = "HITSAVE_LOGS_GROUP")]
    logs_group: Option<String>,
    /// The logs group's region.
    #[arg(long, value_name = "REGION", env = "HITSAVE_LOGS_REGION")]
    logs_region: Option<String>,
    /// Another CloudWatch Logs endpoint than the region's (a VPC endpoint).
    #[arg(long, value_name = "URL", env = "HITSAVE_LOGS_ENDPOINT")]
    logs_endpoint: Option<String>,
    /// Where the database's files go, off the root disk: the data volume's mount point (the
    /// user data names it in host.env) [default: a Docker volume].
    #[arg(long, value_name = "DIR", env = "HITSAVE_DATA_DIR")]
    data_dir: Option<camino::Utf8PathBuf>,
    /// The domain the site serves [default: the environment's; a preview has none]: it serves
    /// that name, `www.` and `api.` of it.
    #[arg(long, value_name = "DOMAIN")]
    domain: Option<String>,
    /// Strict-Transport-Security's max-age, in seconds, once the site serves HTTPS
    /// [default: a year in production, a day in staging].
    #[arg(long, value_name = "SECS")]
    hsts_max_age: Option<u64>,
    #[command(flatten)]
    watch: WatchFlags,
    /// Apply pending migrations without taking a backup first (history says so).
    #[arg(long)]
    skip_backup: bool,
    /// Stop after this step, leaving the running stack as it is (the CodeDeploy hooks split
    /// an install over BeforeInstall, AfterInstall and ApplicationStart this way).
    #[arg(long, value_enum, value_name = "STEP")]
    until: Option<Until>,
}

impl InstallArgs {
    /// Installs the release the flags name.
    pub fn run(self) -> anyhow::Result<()> {
        crate::release::install::run(InstallOptions {
            store: self.store.location(),
            which: self.which.which()?,
            trust: self.trust.options(),
            allow_downgrade: self.allow_downgrade,
            host: self.host.options(),
            tls: self.tls.settings(),
            env: self.env,
            name: None,
            domain: self.domain,
            memory_mib: None,
            project: self.project,
            bind: self.bind,
            http_port: self.http_port,
            https_port: self.https_port,
            local_base_images: self.local_base_images,
            db: self.db.settings(),
            logs: crate::site::settings::LogsSettings {
                group: self.logs_group,
                region: self.logs_region,
                endpoint: self.logs_endpoint,
            },
            data_dir: self.data_dir,
            hsts_max_age: self.hsts_max_age,
            skip_backup: self.skip_backup,
            until: self.until,
            watch: self.watch.settings(),
            front: None,
        })
    }
}
