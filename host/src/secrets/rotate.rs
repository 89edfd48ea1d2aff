//! Applying a new value with no request dropped. The value it replaces becomes
//! `<name>.previous` (0600) until the grace period ends; the app containers that mount the
//! secret are replaced blue/green, so the new ones read the new file while the old ones serve
//! until they drain:
//! - `jwt_secret`: the API signs with the new secret and still accepts tokens signed with the
//!   previous one until the grace period ends (JWT_SECRET_PREVIOUS_UNTIL);
//! - `postgres_password`: the new API containers know both passwords, so they log in whichever
//!   the role has; then the role's password changes (sent as a SCRAM verifier, never the
//!   value) and they move to the new one on their next login;
//! - `gh_client_secret`: the API is replaced (GitHub accepts both of an app's secrets until
//!   the old one is deleted there).
//!
//! Each step can be repeated: a rotation killed half-way is finished by running it again
//! (rotations.json says how far it got).
//!
//! The new containers are then watched like a new release (`release::watch`, told apart by
//! their address). Failing the watch, the rotation goes back: the same steps with the old
//! value as the new one, so the value it replaced serves again and the one it tried stays
//! accepted for the grace period (sessions it signed, a pool logged in with it).

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use camino::Utf8Path;

use crate::database::psql::{Database, scram_verifier};
use crate::kit::files::replace_private;
use crate::kit::ui::Ui;
use crate::release::watch::{self, Verdict};
use crate::site::app::App;
use crate::site::cpu::Weights;
use crate::site::host::Host;
use crate::site::rotations::{Rotation, Rotations, now, rfc3339};
use crate::site::secret_files::{WITH_PREVIOUS, previous_file};
use crate::site::settings::WatchSettings;
use crate::site::stack::Stack;
use crate::site::swap;

/// Secrets xtask makes up a value for; the others (GitHub's client secret) come from stdin.
pub fn generated(name: &str) -> bool {
    matches!(name, "postgres_password" | "jwt_secret")
}

pub struct Rotate<'a> {
    pub ui: &'a Ui,
    pub host: &'a Host,
    pub stack: &'a Stack,
    pub name: &'a str,
    /// The new value; `None` makes one up (for the secrets xtask generates).
    pub value: Option<String>,
    pub grace: Duration,
    /// Rotate again while the last rotation's grace period runs (its previous value dies now).
    pub force: bool,
    pub timeout: Duration,
}

/// What a rotation changed: when its new containers took over, and where they listen.
pub struct Applied {
    /// Seconds since the epoch, just before the first swap.
    pub cutover: f64,
    /// `ip:port` of each new app container.
    pub upstreams: BTreeSet<String>,
}

impl Rotate<'_> {
    /// Rotates the secret, then watches the new containers for `watch.seconds`: a failed
    /// watch turns the rotation back (the old value current again). The reason it went back,
    /// when it did.
    pub fn run_watched(self, watch: &WatchSettings) -> anyhow::Result<Option<String>> {
        let dir = self.host.secrets_dir();
        let applied = self.run()?;
        if watch.seconds == 0 || applied.upstreams.is_empty() {
            return Ok(None);
        }
        let report = watch::watch_rotation(
            self.ui,
            self.host,
            self.stack,
            self.name,
            applied.upstreams,
            applied.cutover,
            watch,
        )?;
        self.ui.info(&report.summary());
        if report.verdict != Verdict::Failed {
            return Ok(None);
        }
        let started = std::time::Instant::now();
        self.ui.info(&format!(
            "the containers that read the new {} failed their watch: bringing the old value back",
            self.name
        ));
        let old = read(&previous_file(&dir, self.name))?;
        let back = Rotate {
            value: Some(old),
            force: true,
            ..self
        };
        back.run().with_context(|| {
            format!(
                "the rotation of {} failed its watch ({}), and bringing the old value back failed too",
                back.name, report.reason
            )
        })?;
        Ok(Some(format!(
            "the containers that read the new {} failed their watch after {:.1} s: {}; the old value is current again and serves ({:.1} s), and the new one stays accepted for the grace period. {}",
            back.name,
            report.watched_seconds,
            report.reason,
            started.elapsed().as_secs_f64(),
            report.summary()
        )))
    }

    /// Rotates the secret: a new value written beside the old one, the apps that mount it
    /// replaced blue/green, the old value accepted for the grace period. Killed anywhere, a
    /// run again finishes it.
    pub fn run(&self) -> anyhow::Result<Applied> {
        let dir = self.host.secrets_dir();
        let name = self.name;
        self.check_release_mounts_previous()?;
        crate::site::secret_files::remove_leftovers(&dir)?;
        crate::site::secret_files::ensure_previous_files(&dir)?;
        let mut rotations = Rotations::read(&dir)?;
        let current = dir.join(name);
        let previous = previous_file(&dir, name);
        let now = now();
        let resume = self.resuming(&rotations, now)?;
        let old = read(&current)?;
        self.check_value(&old, &previous, resume)?;
        if !resume || old == read(&previous)? {
            self.write_new_value(&mut rotations, &old, resume, now)?;
        }
        self.apply(&mut rotations, now)
    }

    /// A release from before rotations existed mounts no previous value: its API would drop
    /// every session, or fail to log in.
    fn check_release_mounts_previous(&self) -> anyhow::Result<()> {
        let name = self.name;
        if WITH_PREVIOUS.contains(&name) {
            let declared = self.stack.config()?["secrets"]
                .get(format!("{name}_previous"))
                .is_some();
            ensure!(
                declared,
                "the current release predates live rotation (its compose file has no {name}_previous): install a newer release first; nothing was changed"
            );
        }
        Ok(())
    }

    /// Whether this finishes an interrupted rotation; a rotation within its grace period is
    /// refused without --force.
    fn resuming(&self, rotations: &Rotations, now: u64) -> anyhow::Result<bool> {
        let name = self.name;
        Ok(match rotations.0.get(name) {
            Some(r) if !r.applied => {
                self.ui.info(&format!(
                    "finishing the rotation of {name} begun at {}",
                    rfc3339(r.started)
                ));
                true
            }
            Some(r) if !r.expired && now < r.grace_until && !self.force => bail!(
                "{name} was rotated at {}, and its previous value is still accepted until {}: rotating again now ends that early; wait, or pass --force",
                rfc3339(r.started),
                rfc3339(r.grace_until)
            ),
            _ => false,
        })
    }

    /// The value given is one the database takes, and does not contradict an interrupted
    /// rotation's.
    fn check_value(&self, old: &str, previous: &Utf8Path, resume: bool) -> anyhow::Result<()> {
        let name = self.name;
        if let Some(v) = &self.value
            && name == "postgres_password"
        {
            // psql (libpq) SASLprep-normalises a password and sqlx does not: printable ASCII
            // is the same to both.
            ensure!(
                v.bytes().all(|b| (0x21..0x7f).contains(&b)),
                "a database password must be printable ASCII without spaces: nothing was changed"
            );
        }
        if resume && old != read(previous)? && self.value.as_ref().is_some_and(|v| *v != old) {
            bail!(
                "the interrupted rotation of {name} already wrote its new value, and it is not the one given: run `{}` without a value to finish it first",
                crate::site::host::command(&format!("secrets rotate {name}"), &self.host.root)
            );
        }
        Ok(())
    }

    /// The old value first, then the record, then the new value: killed anywhere, the current
    /// value is one of the two and the previous one is kept.
    fn write_new_value(
        &self,
        rotations: &mut Rotations,
        old: &str,
        resume: bool,
        now: u64,
    ) -> anyhow::Result<()> {
        let (name, dir) = (self.name, self.host.secrets_dir());
        let (current, previous) = (dir.join(name), previous_file(&dir, name));
        let new = match self.value.clone() {
            Some(v) => v,
            None if generated(name) => crate::kit::random::random_hex(32)?,
            None => bail!(
                "{name} is issued elsewhere (GitHub's OAuth app settings): pipe the new value in, `... | {}`",
                crate::site::host::command(
                    &format!("secrets rotate {name} --from-stdin"),
                    &self.host.root
                )
            ),
        };
        ensure!(
            new != old,
            "the new value of {name} is the one it has already: nothing to rotate"
        );
        if !resume {
            replace_private(&previous, old.as_bytes())?;
            rotations.0.insert(
                name.to_owned(),
                Rotation {
                    started: now,
                    grace_until: now + self.grace.as_secs(),
                    applied: false,
                    expired: false,
                },
            );
            rotations.write(&dir)?;
        }
        replace_private(&current, new.as_bytes())?;
        crate::site::secret_files::hand_over(&dir)?;
        self.ui.info(&format!(
            "wrote the new {name}; the old value is kept as {} until {}",
            previous.file_name().unwrap_or_default(),
            rfc3339(rotations.0[name].grace_until)
        ));
        Ok(())
    }

    /// The apps that mount the secret replaced so that they read the new value (and the
    /// database role's password changed); then the rotation is recorded as applied.
    fn apply(&self, rotations: &mut Rotations, now: u64) -> anyhow::Result<Applied> {
        let (name, dir) = (self.name, self.host.secrets_dir());
        let (current, previous) = (dir.join(name), previous_file(&dir, name));
        // The grace period counts from when the new value is applied: a rotation finished
        // late still gives the old value its whole grace.
        if let Some(r) = rotations.0.get_mut(name) {
            r.grace_until = r.grace_until.max(now + self.grace.as_secs());
        }
        rotations.write(&dir)?;
        let apps = apps_mounting(self.stack, name)?;
        let weights = weights(self.ui, self.stack)?;
        self.ui.info(&format!(
            "replacing {} blue/green, so that they read the new {name}",
            names(&apps)
        ));
        let cutover = watch::now_seconds();
        swap::replace(
            self.ui,
            self.stack,
            &self.host.nginx_dir(),
            &apps,
            &weights,
            self.timeout,
        )?
        .start(self.ui)?;
        let upstreams = upstreams(&self.host.nginx_dir(), &apps)?;
        if name == "postgres_password" {
            change_role_password(self.ui, self.stack, &current, &previous)?;
        }
        if let Some(r) = rotations.0.get_mut(name) {
            r.applied = true;
        }
        rotations.write(&dir)?;
        Ok(Applied { cutover, upstreams })
    }
}

/// Where nginx sends each app's requests now, as it logs its upstream: the address the swap
/// just routed it to (the site's file, which nginx has reloaded), and the route by its name
/// that nginx falls back to when that address does not answer (a container that died: its
/// requests must count as its own).
fn upstreams(nginx_dir: &Utf8Path, apps: &[App]) -> anyhow::Result<BTreeSet<String>> {
    let routed = crate::site::nginx::routed(nginx_dir);
    let mut upstreams = BTreeSet::new();
    for app in apps {
        let at = routed.address(*app).with_context(|| {
            format!(
                "the site routes {} by name only ({}), so the watch cannot tell its new container's requests: see `xtask status`",
                app.service(),
                routed.get(*app)
            )
        })?;
        upstreams.insert(at.to_string());
        upstreams.insert(crate::site::nginx::by_name_listener(*app).to_owned());
    }
    Ok(upstreams)
}

/// Sets the role's password to the current file's value, logged in with the previous value
/// (or, when an interrupted rotation changed it already, the current one), then checks that
/// the current value logs in.
fn change_role_password(
    ui: &Ui,
    stack: &Stack,
    current: &Utf8Path,
    previous: &Utf8Path,
) -> anyhow::Result<()> {
    let db = Database::of(stack)?;
    ui.info(&format!("changing the password of the role {}", db.user));
    let sql = format!(
        "ALTER ROLE \"{}\" PASSWORD '{}';",
        db.user.replace('"', "\"\""),
        scram_verifier(&read(current)?)?
    );
    db.run_sql(previous, &sql)
        .or_else(|first| {
            db.run_sql(current, &sql)
                .map_err(|e| e.context(format!("with the previous password: {first:#}")))
        })
        .context("cannot change the role's password; the apps keep the previous one")?;
    let answer = db
        .run_sql(current, "SELECT 1")
        .context("the new password does not log in")?;
    ensure!(answer == "1", "psql answered {answer:?} to SELECT 1");
    Ok(())
}

/// The end of grace periods that are over: each previous value removed, and the containers
/// that mounted it replaced so that none holds it. The rotations it expired.
pub fn expire(
    ui: &Ui,
    host: &Host,
    stack: &Stack,
    timeout: Duration,
) -> anyhow::Result<Vec<String>> {
    let dir = host.secrets_dir();
    crate::site::secret_files::remove_leftovers(&dir)?;
    let mut rotations = Rotations::read(&dir)?;
    let due = rotations.due(now());
    for name in &due {
        let previous = previous_file(&dir, name);
        if WITH_PREVIOUS.contains(&name.as_str()) {
            replace_private(&previous, b"")?;
            crate::site::secret_files::hand_over(&dir)?;
            let apps = apps_mounting(stack, &format!("{name}_previous"))?;
            ui.info(&format!(
                "the grace period of the previous {name} is over: removed; replacing {} so that none holds it",
                names(&apps)
            ));
            swap::replace(
                ui,
                stack,
                &host.nginx_dir(),
                &apps,
                &weights(ui, stack)?,
                timeout,
            )?
            .start(ui)?;
        } else {
            match std::fs::remove_file(&previous) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("cannot remove {previous}"));
                }
                _ => {}
            }
            ui.info(&format!(
                "the grace period of the previous {name} is over: removed"
            ));
        }
        if let Some(r) = rotations.0.get_mut(name) {
            r.expired = true;
        }
        rotations.write(&dir)?;
    }
    Ok(due)
}

fn read(path: &Utf8Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

/// The apps whose containers mount `secret` (compose's name for it).
fn apps_mounting(stack: &Stack, secret: &str) -> anyhow::Result<Vec<App>> {
    let config = stack.config()?;
    let services = config["services"]
        .as_object()
        .context("the compose configuration has no services")?;
    Ok(services
        .iter()
        .filter(|(_, spec)| {
            spec["secrets"].as_array().is_some_and(|list| {
                list.iter()
                    .any(|s| s["source"].as_str() == Some(secret) || s.as_str() == Some(secret))
            })
        })
        .filter_map(|(service, _)| App::of_service(service))
        .collect())
}

fn weights(ui: &Ui, stack: &Stack) -> anyhow::Result<Weights> {
    Weights::of_stack(ui, stack)
}

fn names(apps: &[App]) -> String {
    if apps.is_empty() {
        return "no container".into();
    }
    apps.iter()
        .map(|a| a.service())
        .collect::<Vec<_>>()
        .join(" and ")
}
