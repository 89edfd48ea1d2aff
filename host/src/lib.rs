//! The host program: what every release ships to its hosts as `bin/xtask`, where CodeDeploy runs
//! it as root. It holds the host commands (install, rollback, status, doctor, hook, verify) and
//! what they need, nothing else; the tooling (`cargo xtask`, in `xtask/`) reuses them as a
//! library, so `cargo xtask install` on a laptop is the same code.

pub mod backup;
pub mod checkout;
pub mod compose;
pub mod console;
pub mod digest;
pub mod doctor;
pub mod elf;
pub mod hook;
pub mod http;
pub mod install;
pub mod process;
pub mod psql;
pub mod rollback;
pub mod secrets;
pub mod status;
pub mod store;
pub mod tls;
pub mod trust;
pub mod ui;
pub mod verify;

/// The commands a host may run; `cargo xtask` offers the same ones.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Download a release from the store and check every artifact against its manifest.
    Verify(verify::Args),
    /// On the host: fetch, verify and unpack a release, migrate, swap the compose stack and
    /// gate on health, rolling back when the new version is not healthy.
    Install(Box<install::Args>),
    /// On the host, from CodeDeploy's lifecycle hooks (deploy/hooks/): check the bundle, then
    /// one step of an install by the release's own host program.
    Hook(hook::Args),
    /// On the host: run a release that is already on disk again (the previous one by default).
    Rollback(rollback::Args),
    /// On the host: current and previous release, container health, last installs, disk use.
    Status(status::Args),
    /// On the host: check Docker, Compose, secrets, TLS files and disk, with the fix for each.
    Doctor(doctor::Args),
    /// On the host: back up the database (pg_dump in its container) into <root>/backups and,
    /// with --store, the artifact store.
    Backup(backup::Args),
    /// On the host: the current release's logs through compose (`logs [SERVICE...] --follow`).
    Logs(console::LogsArgs),
    /// On the host: a command in a running container of the current release
    /// (`exec SERVICE -- CMD...`; a shell by default).
    Exec(console::ExecArgs),
    /// On the host: psql on the current release's database, logged in with the password from
    /// its secret file (`psql [-- PSQL-ARGS...]`).
    Psql(console::PsqlArgs),
    /// On the host: the stack's secrets: `list` (never values), `set NAME` (from stdin),
    /// `rotate NAME` (a new value applied with no request dropped), `prune`.
    Secrets(secrets::Args),
    /// On the host: `maintenance on|off`: every host answers 503 with Retry-After (a page, or
    /// JSON for the API) without stopping anything.
    Maintenance(console::MaintenanceArgs),
    /// On the host: the HTTPS certificate from an ACME CA (Let's Encrypt): `tls renew` when a
    /// third of its lifetime is left, `tls status`.
    Tls(tls::Args),
    /// On the host: put the database back to a backup (BACKUP, --latest or --before RELEASE),
    /// restored into a new database while the site serves, swapped in during a short
    /// maintenance (503 with Retry-After); --undo goes back.
    Restore(backup::restore::Args),
}

impl Command {
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Verify(args) => verify::run(args),
            Command::Install(args) => install::run(*args),
            Command::Hook(args) => hook::run(args),
            Command::Rollback(args) => rollback::run(args),
            Command::Status(args) => status::run(args),
            Command::Doctor(args) => doctor::run(args),
            Command::Backup(args) => backup::run(args),
            Command::Restore(args) => backup::restore::run(args),
            Command::Tls(args) => tls::run(args),
            Command::Logs(args) => console::logs(args),
            Command::Exec(args) => console::exec(args),
            Command::Maintenance(args) => console::maintenance(args),
            Command::Psql(args) => console::psql(args),
            Command::Secrets(args) => secrets::cli::run(args),
        }
    }
}

/// How both programs end: the error's whole chain on stderr, and a failing exit code.
pub fn exit(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
