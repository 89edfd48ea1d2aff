//! HTTPS without hands: `<domain>`, `www.<domain>` and `api.<domain>` get one certificate from
//! an ACME CA (Let's Encrypt by default), issued by the install that finds none and renewed
//! when a third of its lifetime is left, by every install and by `xtask tls renew` (a systemd
//! timer). nginx answers the HTTP-01 challenges on port 80 and keeps serving throughout; a
//! new certificate is taken up by a graceful reload (new connections get it, open ones
//! finish). With `--tls manual` (HITSAVE_TLS=manual) the files in `<root>/tls/` are the
//! operator's and are never replaced; hand-placed files are left alone in any case.
//!
//! A failure (the names do not resolve here, port 80 is closed, a rate limit, the CA is down)
//! changes nothing: the current certificate stays, the error is recorded, and the next
//! attempt waits (15 min, doubling, up to a day; an hour at least after a rate limit) unless
//! `--force`.

pub mod acme;

use std::time::Duration;

use anyhow::{Context, bail};
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use crate::kit::ui::Ui;
use crate::site::host::Host;
use crate::site::settings::{Env, TlsMode, TlsSettings};
use crate::site::stack::Stack;
use crate::site::tls_files::{CertInfo, Files, Kind};

/// Below this, `status` and `doctor --tls` warn.
pub const WARN_DAYS: u64 = 14;

/// The names one certificate covers.
pub fn names(domain: &str) -> Vec<String> {
    vec![
        domain.to_owned(),
        format!("www.{domain}"),
        format!("api.{domain}"),
    ]
}

/// What `ensure` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `--tls manual`, or hand-placed files: nothing touched.
    LeftAlone(String),
    /// The current certificate is good for a while.
    Fresh(CertInfo),
    /// Not due, but an earlier failure's backoff has not passed: nothing tried.
    Deferred(String),
    /// A new certificate is in place (nginx must reload).
    Issued(CertInfo),
}

/// The last failure, so retries back off (`<root>/tls/acme/state.json`).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Backoff {
    failures: u32,
    /// Seconds since the epoch before which no new attempt is made (without --force).
    next_attempt: u64,
    last_error: String,
}

fn backoff_file(host: &Host) -> Utf8PathBuf {
    host.tls_dir().join("acme/state.json")
}

fn read_backoff(host: &Host) -> Backoff {
    std::fs::read(backoff_file(host))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Issues or renews the certificate of `domain` when it is missing, does not cover the
/// names, or is due; `force` also ignores the backoff and renews a fresh one.
pub fn ensure(
    ui: &Ui,
    host: &Host,
    env: Env,
    domain: &str,
    args: &TlsSettings,
    force: bool,
) -> anyhow::Result<Outcome> {
    let files = Files::new(&host.tls_dir());
    if args.mode == TlsMode::Manual {
        return Ok(Outcome::LeftAlone(format!(
            "--tls manual: the certificate in {} is the operator's",
            files.dir
        )));
    }
    if files.kind() == Kind::HandPlaced {
        return Ok(Outcome::LeftAlone(format!(
            "{} was placed by hand: it is left alone (set HITSAVE_TLS=manual to say so, or remove both files to have xtask issue one)",
            files.fullchain()
        )));
    }
    let names = names(domain);
    let current = files.current();
    let due = match &current {
        None => true,
        Some(c) if !c.covers(&names) => true,
        Some(c) => {
            let within = args
                .tls_renew_within
                .map_or(c.lifetime() / 3, |d| Duration::from_secs_f64(d * 86_400.0));
            c.remaining() < within
        }
    };
    if !due && !force {
        return Ok(Outcome::Fresh(current.expect("not due, so there is one")));
    }
    let backoff = read_backoff(host);
    if !force && backoff.next_attempt > crate::site::tls_files::now() {
        return Ok(Outcome::Deferred(format!(
            "the last attempt failed ({}); the next one waits until {} (`--force` to try now)",
            backoff.last_error,
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + Duration::from_secs(backoff.next_attempt)
            )
        )));
    }
    let directory = args.directory(env);
    ui.info(&format!(
        "requesting a certificate for {} from {directory}",
        names.join(", ")
    ));
    let started = std::time::Instant::now();
    let client = crate::tls::acme::Client {
        directory,
        email: args.acme_email.as_deref(),
        ca_root: args.acme_ca_root.as_deref(),
        state_dir: host.tls_dir().join("acme"),
        webroot: host.nginx_dir().join("acme"),
    };
    let result = client.issue(&names).and_then(|issued| {
        let info = CertInfo::parse(issued.chain.as_bytes())?;
        files.install(&issued.chain, &issued.key)?;
        Ok(info)
    });
    match result {
        Ok(info) => {
            let _ = std::fs::remove_file(backoff_file(host));
            ui.info(&format!(
                "certificate issued in {:.1} s: {}",
                started.elapsed().as_secs_f64(),
                info.describe()
            ));
            Ok(Outcome::Issued(info))
        }
        Err(e) => Err(record_failure(host, &backoff, &e, current.as_ref(), &names)),
    }
}

/// Records a failed attempt and when the next may be made; the error to report.
fn record_failure(
    host: &Host,
    backoff: &Backoff,
    e: &anyhow::Error,
    current: Option<&CertInfo>,
    names: &[String],
) -> anyhow::Error {
    let failures = backoff.failures + 1;
    let text = format!("{e:#}");
    // 15 min, doubling, up to a day; an hour at least after a rate limit.
    let wait = ((15 * 60u64) << (failures - 1).min(7)).min(86_400);
    let wait = if text.contains("rateLimited") {
        wait.max(3_600)
    } else {
        wait
    };
    let state = Backoff {
        failures,
        next_attempt: crate::site::tls_files::now() + wait,
        last_error: text.clone(),
    };
    // Private like the rest of tls/ (the error may name the host's setup).
    let file = backoff_file(host);
    if let Some(dir) = file.parent() {
        let _ = crate::kit::files::create_private_dir(dir);
    }
    let _ = std::fs::remove_file(&file);
    if let Ok(json) = serde_json::to_string(&state) {
        let _ = crate::kit::files::write_private(&file, &json);
    }
    anyhow::anyhow!(
        "no new certificate for {} ({text}); {}; the next attempt waits {} min",
        names.join(", "),
        match current {
            Some(c) => format!("the current one stays: {}", c.describe()),
            None => "the site keeps serving HTTP only".into(),
        },
        wait / 60
    )
}

/// After an install's swap (or for `tls renew`): ensure the certificate, then have nginx
/// serve it: the site re-rendered with its 443 listeners the first time, a graceful reload
/// every time the certificate changed. A failure leaves everything serving as it was.
pub fn apply(
    ui: &Ui,
    host: &Host,
    stack: &Stack,
    args: &TlsSettings,
    force: bool,
) -> anyhow::Result<Outcome> {
    let env = stack.env.env()?;
    let domain = stack.domain()?.to_owned();
    let outcome = ensure(ui, host, env, &domain, args, force)?;
    let changed = crate::site::nginx::set_tls(
        &stack.release_dir,
        &host.nginx_dir(),
        &domain,
        crate::site::nginx::serves_https(stack)?,
    )?;
    if changed || matches!(outcome, Outcome::Issued(_)) {
        crate::site::swap::reload_nginx(stack)?;
        ui.info("nginx reloaded: new connections get the new certificate, open ones finish");
    }
    Ok(outcome)
}

/// One line for `status` and `doctor --tls`: the names, issuer and expiry, or what is missing;
/// `Err` when it needs attention (none, or fewer than WARN_DAYS left).
pub fn report(host: &Host) -> Result<String, String> {
    let files = Files::new(&host.tls_dir());
    let backoff = read_backoff(host);
    let failing = if backoff.failures > 0 {
        format!("; the last renewal failed: {}", backoff.last_error)
    } else {
        String::new()
    };
    match files.current() {
        None => Err(format!(
            "no certificate in {}: an install issues one (or `{}`){failing}",
            files.dir,
            crate::site::host::command("tls renew", &host.root)
        )),
        Some(c) if c.remaining() < Duration::from_secs(WARN_DAYS * 86_400) => Err(format!(
            "the certificate expires in fewer than {WARN_DAYS} days: {}{failing}",
            c.describe()
        )),
        Some(c) => Ok(format!(
            "{}{}{failing}",
            c.describe(),
            if files.kind() == Kind::HandPlaced {
                " (placed by hand)"
            } else {
                ""
            }
        )),
    }
}

/// `tls status`: the certificate's names, issuer and expiry, or the problem with it.
pub fn status(root: &Utf8Path) -> anyhow::Result<()> {
    let host = Host::open(root)?;
    match report(&host) {
        Ok(line) => println!("ok: {line}"),
        Err(problem) => {
            println!("WARNING: {problem}");
            bail!("{problem}");
        }
    }
    Ok(())
}

/// `tls renew`: the certificate renewed when due (or `force`d), under the install lock.
pub fn renew(
    root: &Utf8Path,
    settings: &TlsSettings,
    force: bool,
    lock_timeout: Duration,
) -> anyhow::Result<()> {
    let session = crate::site::session::Session::begin(root, "tls renew", lock_timeout)?;
    let (ui, host) = (&session.ui, &session.host);
    let current = host.current().with_context(|| {
        format!("nothing is installed under {root}: the first install issues the certificate")
    })?;
    let stack = Stack::open(&host.release_dir(&current))?;
    if !stack.env.env()?.tls() {
        ui.info("this host serves no HTTPS (--env local): nothing to renew");
        return Ok(());
    }
    let notify = crate::site::notify::settings_of_host();
    let tell = |kind, text: String| {
        let event = crate::site::notify::Event {
            kind,
            fields: serde_json::json!({ "domain": stack.domain().ok(), "reason": text }),
            text,
        };
        crate::site::notify::send(host, &notify, &event);
    };
    match apply(ui, host, &stack, settings, force) {
        Ok(Outcome::LeftAlone(why) | Outcome::Deferred(why)) => ui.info(&why),
        Ok(Outcome::Fresh(c)) => ui.info(&format!("not due yet: {}", c.describe())),
        Ok(Outcome::Issued(_)) => {}
        Err(e) => {
            tell("certificate-renewal-failed", format!("{e:#}"));
            return Err(e);
        }
    }
    if let Err(problem) = report(host) {
        // Fewer than WARN_DAYS left (or no certificate at all) after this renewal.
        tell("certificate-expiring", problem);
    }
    crate::site::notify::disk(host, &notify);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::settings::{LETS_ENCRYPT, LETS_ENCRYPT_STAGING};

    fn args(mode: TlsMode, directory: &str) -> TlsSettings {
        TlsSettings {
            mode,
            acme_directory: Some(directory.into()),
            acme_email: None,
            acme_ca_root: None,
            tls_renew_within: None,
        }
    }

    #[test]
    fn what_is_renewed_when_and_what_a_failure_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::open(camino::Utf8Path::from_path(dir.path()).unwrap()).unwrap();
        let ui = Ui::new();
        // Nothing listens on port 1: the CA is unreachable.
        let down = args(TlsMode::Acme, "https://127.0.0.1:1/dir");
        let out = ensure(
            &ui,
            &host,
            Env::Production,
            "hitsave.io",
            &args(TlsMode::Manual, ""),
            false,
        );
        assert!(matches!(out, Ok(Outcome::LeftAlone(_))));
        let err = ensure(&ui, &host, Env::Production, "hitsave.io", &down, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cannot reach the ACME server") && err.contains("serving HTTP only"),
            "{err}"
        );
        // The next attempt waits, unless forced.
        let out = ensure(&ui, &host, Env::Production, "hitsave.io", &down, false).unwrap();
        assert!(
            matches!(&out, Outcome::Deferred(why) if why.contains("waits until")),
            "{out:?}"
        );
        assert!(ensure(&ui, &host, Env::Production, "hitsave.io", &down, true).is_err());
        assert_eq!(read_backoff(&host).failures, 2);
        // A fresh certificate for the names is not due; one for other names is.
        let (chain, key) = crate::site::tls_files::tests::self_signed(&[
            "hitsave.io",
            "www.hitsave.io",
            "api.hitsave.io",
        ]);
        Files::new(&host.tls_dir()).install(&chain, &key).unwrap();
        let out = ensure(&ui, &host, Env::Production, "hitsave.io", &down, false).unwrap();
        assert!(matches!(out, Outcome::Fresh(_)), "{out:?}");
        let out = ensure(&ui, &host, Env::Production, "other.io", &down, false).unwrap();
        assert!(matches!(out, Outcome::Deferred(_)), "{out:?}");
        // Due by a threshold longer than its life: tried, fails, keeps it.
        let mut soon = down.clone();
        soon.tls_renew_within = Some(100_000.0);
        let err = ensure(&ui, &host, Env::Production, "hitsave.io", &soon, true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("the current one stays"), "{err}");
        assert_eq!(
            std::fs::read_to_string(host.tls_dir().join("privkey.pem")).unwrap(),
            key
        );
        let line = report(&host).unwrap();
        assert!(
            line.contains("www.hitsave.io") && line.contains("the last renewal failed"),
            "{line}"
        );
        assert_eq!(args(TlsMode::Acme, "x").directory(Env::Staging), "x");
        let mut default = down.clone();
        default.acme_directory = None;
        assert_eq!(default.directory(Env::Staging), LETS_ENCRYPT_STAGING);
        assert_eq!(default.directory(Env::Production), LETS_ENCRYPT);
    }
}
