//! `cargo xtask status`: what runs on this host: current and previous release, each
//! container's state and health, the last installs and disk use.

use camino::Utf8Path;
use hitsave_schema::ReleaseId;
use serde::Serialize;

use crate::site::history::HistoryEntry;
use crate::site::host::Host;
use crate::site::stack::{Health, Stack};

#[derive(clap::Args)]
pub struct Args {
    /// The install root.
    #[arg(long, env = "HITSAVE_ROOT", default_value = crate::site::host::DEFAULT_ROOT)]
    root: camino::Utf8PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Status {
    root: String,
    current: Option<ReleaseId>,
    previous: Option<ReleaseId>,
    releases: Vec<ReleaseId>,
    containers: Vec<ContainerStatus>,
    /// Whether the current release serves through nginx, and if not, why.
    serving: Option<Result<(), String>>,
    disk_used_bytes: u64,
    disk_free_bytes: u64,
    /// The backup whose restore drill passed last.
    last_verified_backup: Option<VerifiedBackup>,
    /// Every host answers the maintenance page (a restore runs, or was killed).
    maintenance: bool,
    /// Why the load balancer's health path fails (the host is leaving or not yet back in the
    /// target group), when it does.
    draining: Option<String>,
    /// The HTTPS certificate: names, issuer and expiry; none on a host without one.
    certificate: Option<crate::site::tls_files::CertInfo>,
    /// The certificate's line, or what needs attention (none, fewer than 14 days left).
    tls: Result<String, String>,
    /// The last watch after a cutover: its figures and verdict.
    watch: Option<crate::release::watch::Report>,
    last: Vec<HistoryEntry>,
}

#[derive(Serialize)]
struct VerifiedBackup {
    id: hitsave_schema::BackupId,
    /// Seconds since its drill passed.
    age_seconds: u64,
}

#[derive(Serialize)]
struct ContainerStatus {
    service: String,
    state: String,
    health: String,
    image: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if !args.root.join("releases").is_dir() {
        anyhow::bail!(
            "nothing is installed under {} (no releases/): run `{}` first",
            args.root,
            crate::site::host::command("install --store ... --channel ...", &args.root)
        );
    }
    let host = Host::open(&args.root)?;
    let current = host.current();
    let (containers, serving) = match &current {
        Some(id) => {
            let stack = Stack::open(&host.release_dir(id))?;
            let containers = stack
                .containers()?
                .into_iter()
                .map(|c| ContainerStatus {
                    service: c.service,
                    state: c.state.as_str().to_owned(),
                    health: c.health.map_or("", Health::as_str).to_owned(),
                    image: c.image,
                })
                .collect();
            (containers, Some(stack.serving()?))
        }
        None => (Vec::new(), None),
    };
    let history = host.history()?;
    let status = Status {
        root: args.root.to_string(),
        current,
        previous: host.previous(),
        releases: host.releases()?,
        containers,
        serving,
        disk_used_bytes: du(&args.root),
        disk_free_bytes: crate::release::preflight::free_bytes(&args.root)?,
        last_verified_backup: crate::database::archive::last_verified(&host).map(|(id, age)| {
            VerifiedBackup {
                id,
                age_seconds: age.as_secs(),
            }
        }),
        maintenance: crate::site::nginx::in_maintenance(&host.nginx_dir()),
        draining: crate::site::nginx::draining(&host.nginx_dir()),
        certificate: crate::site::tls_files::Files::new(&host.tls_dir()).current(),
        tls: crate::tls::report(&host),
        watch: crate::release::watch::Report::last(&host),
        last: history.into_iter().rev().take(5).collect(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print_text(&status);
    }
    Ok(())
}

/// The status for a person at a terminal.
fn print_text(status: &Status) {
    let or_none = |id: &Option<ReleaseId>| id.as_ref().map_or("none", ReleaseId::as_str).to_owned();
    println!("root:      {}", status.root);
    println!("current:   {}", or_none(&status.current));
    println!("previous:  {}", or_none(&status.previous));
    println!("releases:  {}", ReleaseId::list(&status.releases));
    match &status.last_verified_backup {
        Some(b) => println!(
            "backup:    {} restores (drill passed {} h ago)",
            b.id,
            b.age_seconds / 3600
        ),
        None => println!("backup:    none verified (`xtask backup verify`)"),
    }
    match &status.tls {
        Ok(line) => println!("tls:       {line}"),
        Err(problem) => println!("tls:       WARNING: {problem}"),
    }
    if let Some(watch) = &status.watch {
        println!("watch:     {} ({})", watch.summary(), watch.started);
    }
    if status.maintenance {
        println!(
            "MAINTENANCE: every host answers 503 (a restore runs, or was stopped half-way: running it again or an install ends it)"
        );
    }
    if let Some(why) = &status.draining {
        println!(
            "DRAINING:  /lb-health answers 503, so the load balancer sends nothing here ({why}); the next deployment's BeforeAllowTraffic ends it"
        );
    }
    match &status.serving {
        Some(Ok(())) => println!("serving:   yes"),
        Some(Err(reason)) => println!("serving:   NO: {reason}"),
        None => println!("serving:   nothing installed"),
    }
    for c in &status.containers {
        println!(
            "  {:<8} {:<10} {:<10} {}",
            c.service, c.state, c.health, c.image
        );
    }
    println!(
        "disk:      {} used under the root, {} free",
        crate::kit::ui::human_bytes(status.disk_used_bytes),
        crate::kit::ui::human_bytes(status.disk_free_bytes)
    );
    for h in &status.last {
        println!(
            "  {} {} {} {} ({:.1} s{})",
            h.time,
            h.action,
            h.release,
            h.outcome,
            h.seconds,
            h.by.as_ref()
                .map(|by| format!(", by {by}"))
                .unwrap_or_default()
        );
    }
}

/// Bytes in regular files under `dir`, without following links.
fn du(dir: &Utf8Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}
