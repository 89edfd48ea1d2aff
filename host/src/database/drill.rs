//! `xtask backup verify [ID]`, the restore drill: a backup is only a backup once it has been
//! restored. Its SHA-256 is checked, then it is restored into a throwaway PostgreSQL container
//! (no network; never the live database), its rows are counted table by table against the
//! record, and the migrator of the release it was taken under checks the schema.

use std::time::Duration;

use anyhow::{Context, bail};
use camino::Utf8Path;
use hitsave_schema::BackupRecord;

use crate::kit::process::{Wait, wait_for};
use crate::kit::time::now_rfc3339;
use crate::kit::ui::Ui;
use crate::site::host::Host;
use crate::site::stack::ReleaseEnv;

/// Restores backup `id` (the newest when `None`) into a throwaway database and compares it
/// with its record; an error says what differs. Records the verification beside the backup.
pub fn verify(
    ui: &Ui,
    host: &Host,
    id: Option<&hitsave_schema::BackupId>,
) -> anyhow::Result<BackupRecord> {
    let dir = host.backups_dir();
    let id = match id {
        Some(id) => id.clone(),
        None => crate::database::archive::ids(&dir)?
            .pop()
            .with_context(|| format!("there is no backup in {dir}"))?,
    };
    let record = BackupRecord::parse(
        &std::fs::read(dir.join(format!("{id}.json")))
            .with_context(|| format!("there is no backup {id} in {dir}"))?,
    )?;
    let dump = dir.join(format!("{id}.dump"));
    check_hash(&dump, &record)?;
    // Images of the release the backup was taken under (or the current one).
    let release = record
        .release
        .as_ref()
        .filter(|r| host.has_release(r))
        .cloned()
        .or_else(|| host.current())
        .context("no release is on this host to take the database and migrator images from")?;
    let env = ReleaseEnv::read(&host.release_dir(&release).join("release.env"))?;
    let drill = Drill::start(env.postgres_image()?, &id)?;
    ui.info(&format!(
        "restoring backup {id} into a throwaway database ({})",
        drill.name
    ));
    let server = crate::database::server::Server::in_container(drill.name.clone())?;
    server
        .restore(&server.live, &dump)
        .context("the backup does not restore (truncated or damaged?)")?;
    let counted = server.row_counts(&server.live)?;
    let differ = differences(&record.tables, &counted);
    if !differ.is_empty() {
        bail!(
            "backup {id} does not restore what it recorded: {}",
            differ.join("; ")
        );
    }
    drill.check_schema(&format!("hitsave/migrate:{}", env.image_tag("migrate")?))?;
    std::fs::write(
        dir.join(format!("{id}.verified")),
        format!("{}\n", now_rfc3339()),
    )?;
    ui.info(&format!(
        "backup {id} restores: {} tables, every row count as recorded, schema checked by release {release}'s migrator",
        counted.len()
    ));
    Ok(record)
}

/// How the rows restored differ from the rows recorded, table by table (empty: they agree).
pub(super) fn differences(recorded: &Counts, restored: &Counts) -> Vec<String> {
    recorded
        .iter()
        .filter(|(t, n)| restored.get(*t) != Some(n))
        .map(|(t, n)| match restored.get(t) {
            Some(got) => format!("{t}: {n} rows in the record, {got} restored"),
            None => format!("{t}: {n} rows in the record, the table is not restored"),
        })
        .chain(
            restored
                .keys()
                .filter(|t| !recorded.contains_key(*t))
                .map(|t| format!("{t}: restored, not in the record")),
        )
        .collect()
}

type Counts = std::collections::BTreeMap<String, u64>;

/// The dump is the one its record describes, byte for byte.
pub(super) fn check_hash(dump: &Utf8Path, record: &BackupRecord) -> anyhow::Result<()> {
    let (size, actual) =
        crate::kit::digest::of_file(dump).with_context(|| format!("cannot read {dump}"))?;
    if size != record.size || actual != record.sha256 {
        bail!(
            "backup {} is damaged: {dump} is {size} bytes with sha256 {actual}, its record says {} bytes, sha256 {}; nothing was restored",
            record.id,
            record.size,
            record.sha256
        );
    }
    Ok(())
}

/// Where the drill's password file is mounted, in the database and the migrator alike.
const SECRET: &str = "/run/secrets/postgres_password";

/// A PostgreSQL container without a network, removed when dropped (also the database of
/// `cargo xtask bench backup`).
pub struct Drill {
    pub name: String,
    /// Its password (random), as a file: both images read it from POSTGRES_PASSWORD_FILE.
    password: tempfile::NamedTempFile,
}

impl Drill {
    /// Starts one from `image`, named for this process and `id`, and waits until it accepts
    /// connections.
    pub fn start(image: &str, id: &str) -> anyhow::Result<Drill> {
        let name = format!("hitsave-drill-{}-{}", std::process::id(), id.len());
        let password = tempfile::NamedTempFile::new()?;
        std::fs::write(password.path(), crate::kit::random::random_hex(16)?)?;
        duct::cmd!(
            "docker",
            "run",
            "--detach",
            "--name",
            &name,
            "--network",
            "none",
            "--env",
            "POSTGRES_USER=hitsave",
            "--env",
            "POSTGRES_DB=hitsave",
            "--volume",
            format!("{}:{SECRET}:ro", password.path().display()),
            "--env",
            format!("POSTGRES_PASSWORD_FILE={SECRET}"),
            image
        )
        .stdout_null()
        .run()
        .with_context(|| format!("cannot start a throwaway database from {image}"))?;
        let drill = Drill { name, password };
        wait_for(
            "the throwaway database",
            Duration::from_secs(120),
            Duration::from_millis(500),
            || {
                if crate::database::server::accepts(&drill.name, "hitsave", "hitsave") {
                    return Ok(Wait::Done(()));
                }
                let running =
                    duct::cmd!("docker", "inspect", "-f", "{{.State.Running}}", &drill.name)
                        .read()
                        .unwrap_or_default();
                if running.trim() != "true" {
                    let logs = crate::kit::docker::logs(&drill.name, &["--tail", "20"]);
                    bail!("the throwaway database ({image}) stopped:\n{logs}");
                }
                Ok(Wait::NotYet("it does not accept connections yet".into()))
            },
        )?;
        Ok(drill)
    }

    /// The release's migrator finds every applied migration known and unchanged.
    fn check_schema(&self, migrate_image: &str) -> anyhow::Result<()> {
        let mount = format!("{}:{SECRET}:ro", self.password.path().display());
        let out = duct::cmd!(
            "docker",
            "run",
            "--rm",
            "--network",
            format!("container:{}", self.name),
            "--volume",
            mount,
            "--env",
            "POSTGRES_HOST=127.0.0.1",
            "--env",
            format!("POSTGRES_PASSWORD_FILE={SECRET}"),
            migrate_image,
            "check"
        )
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()?;
        if !out.status.success() {
            bail!(
                "the migrator ({migrate_image}) finds the restored schema wrong: {}",
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        Ok(())
    }
}

impl Drop for Drill {
    fn drop(&mut self) {
        let _ = duct::cmd!("docker", "rm", "--force", "--volumes", &self.name)
            .stdout_null()
            .stderr_null()
            .unchecked()
            .run();
    }
}
