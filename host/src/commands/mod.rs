//! The verbs: one file per host command, its flags and its `run`; the only place clap lives.

pub mod backup;
pub mod doctor;
pub mod env;
pub mod exec;
pub mod flags;
pub mod hook;
pub mod install;
pub mod logs;
pub mod maintenance;
pub mod psql;
pub mod restore;
pub mod rollback;
pub mod routes;
pub mod secrets;
pub mod status;
pub mod tls;
pub mod verify;

use camino::Utf8Path;

/// The commands a host may run; `cargo xtask` offers the same ones.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Download a release from the store and check every artifact against its manifest.
    Verify(verify::VerifyArgs),
    /// On the host: fetch, verify and unpack a release, migrate, swap the compose stack and
    /// gate on health, rolling back when the new version is not healthy.
    Install(Box<install::InstallArgs>),
    /// On the host, from CodeDeploy's lifecycle hooks (deploy/hooks/): check the bundle, then
    /// one step of an install by the release's own host program.
    Hook(hook::HookArgs),
    /// On the host: run a release that is already on disk again (the previous one by default).
    Rollback(rollback::RollbackArgs),
    /// On the host: current and previous release, container health, last installs, disk use.
    Status(self::status::Args),
    /// On the host: check Docker, Compose, secrets, TLS files and disk, with the fix for each.
    Doctor(self::doctor::Args),
    /// On the host: back up the database (pg_dump in its container) into <root>/backups and,
    /// with --store, the artifact store.
    Backup(backup::BackupArgs),
    /// On the host: the current release's logs through compose (`logs [SERVICE...] --follow`).
    Logs(logs::LogsArgs),
    /// On the host: a command in a running container of the current release
    /// (`exec SERVICE -- CMD...`; a shell by default).
    Exec(exec::ExecArgs),
    /// On the host: psql on the current release's database, logged in with the password from
    /// its secret file (`psql [-- PSQL-ARGS...]`).
    Psql(psql::PsqlArgs),
    /// On the host: the stack's secrets: `list` (never values), `set NAME` (from stdin),
    /// `rotate NAME` (a new value applied with no request dropped), `prune`.
    Secrets(self::secrets::Args),
    /// On the host: `maintenance on|off`: every host answers 503 with Retry-After (a page, or
    /// JSON for the API) without stopping anything.
    Maintenance(maintenance::MaintenanceArgs),
    /// On the host: the HTTPS certificate from an ACME CA (Let's Encrypt): `tls renew` when a
    /// third of its lifetime is left, `tls status`.
    Tls(tls::TlsArgs),
    /// On the host: put the database back to a backup (BACKUP, --latest or --before RELEASE),
    /// restored into a new database while the site serves, swapped in during a short
    /// maintenance (503 with Retry-After); --undo goes back.
    Restore(restore::RestoreArgs),
    /// On the host: point nginx at the app containers' current addresses again (a reboot or
    /// a restart by Docker's policy can move one); at boot and every minute by a timer.
    Routes(routes::RoutesArgs),
    /// On a preview host: its environments: `list`, `remove NAME` (everything of it; the
    /// others keep serving), `prune` (closed pull requests' and idle previews).
    Env(env::EnvArgs),
}

impl Command {
    /// Runs the command; `default_store` is the store `verify` reads when none is named (a
    /// checkout's; a host has none).
    pub fn run(self, default_store: Option<&Utf8Path>) -> anyhow::Result<()> {
        match self {
            Command::Verify(args) => args.run(default_store),
            Command::Install(args) => args.run(),
            Command::Hook(args) => args.run(),
            Command::Rollback(args) => args.run(),
            Command::Status(args) => status::run(args),
            Command::Doctor(args) => doctor::run(args),
            Command::Backup(args) => args.run(),
            Command::Restore(args) => args.run(),
            Command::Tls(args) => args.run(),
            Command::Logs(args) => logs::logs(args),
            Command::Exec(args) => exec::exec(args),
            Command::Maintenance(args) => maintenance::maintenance(args),
            Command::Psql(args) => psql::psql(args),
            Command::Secrets(args) => self::secrets::run(args),
            Command::Routes(args) => routes::routes(args),
            Command::Env(args) => args.run(),
        }
    }
}
