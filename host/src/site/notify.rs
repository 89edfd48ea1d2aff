//! Telling the team: a deploy that succeeded, failed or was rolled back (with the reason and
//! the watch's figures), a backup or drill that failed, a certificate renewal that failed or
//! a certificate expiring within 14 days, a disk above 85 %, a secret rotation that finished
//! or was turned back by its watch.
//! Posted as Slack-compatible JSON (`text`, plus the same facts as fields) to the webhook in
//! HITSAVE_NOTIFY_WEBHOOK and/or published to the SNS topic HITSAVE_NOTIFY_SNS_TOPIC, within
//! HITSAVE_NOTIFY_TIMEOUT seconds for all of them (default 5): a receiver that hangs, fails or
//! is not there never fails the change and delays it by no more than that; what happened goes
//! into the change's history line. Every secret value in the host's secrets directory is
//! replaced by `[secret]` before anything leaves the host.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::site::history::{Action, HistoryEntry, Outcome};
use crate::site::host::Host;
use crate::site::settings::{HOST_SETTINGS, HostSettings, NotifySettings};

/// This host's notification settings, from its settings file (HITSAVE_HOST_CONFIG or
/// /etc/hitsave/host.env) and the environment; none when the file cannot be read (a change
/// never fails for it).
pub fn settings_of_host() -> NotifySettings {
    let path = std::env::var("HITSAVE_HOST_CONFIG").unwrap_or_else(|_| HOST_SETTINGS.into());
    HostSettings::read(camino::Utf8Path::new(&path))
        .map(|s| s.notify)
        .unwrap_or_default()
}

/// One thing to tell: its kind (`deploy-failed`), a sentence, and the facts.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: &'static str,
    pub text: String,
    pub fields: Value,
}

/// The event a change's history line makes, if it is one the team is told about.
pub fn event_of(host: &Host, entry: &HistoryEntry) -> Option<Event> {
    let kind = match (entry.action, entry.outcome) {
        (Action::Install, Outcome::Installed) => "deploy-succeeded",
        (Action::Install, Outcome::RolledBack) => "deploy-rolled-back",
        (Action::Install, Outcome::Failed) => "deploy-failed",
        (Action::Rollback, Outcome::Installed) => "rolled-back",
        (Action::Rollback, Outcome::Failed) => "rollback-failed",
        (Action::Backup, Outcome::Failed) => "backup-failed",
        (Action::Restore, Outcome::Failed) => "restore-failed",
        (Action::RotateSecret, Outcome::Failed) => "secret-rotation-failed",
        (Action::RotateSecret, Outcome::RolledBack) => "secret-rotation-rolled-back",
        (Action::RotateSecret, _) => "secret-rotation-finished",
        _ => return None,
    };
    let what = match kind {
        "deploy-succeeded" => format!("release {} is deployed and serves", entry.release),
        "deploy-rolled-back" => format!(
            "release {} was rolled back; {} serves",
            entry.release,
            entry.previous.as_deref().unwrap_or("the release before it")
        ),
        "deploy-failed" => format!("the deploy of release {} failed", entry.release),
        "rolled-back" => format!("rolled back to release {}", entry.release),
        "secret-rotation-finished" => format!(
            "secret {} was rotated",
            entry.secret.as_deref().unwrap_or("?")
        ),
        "secret-rotation-rolled-back" => format!(
            "the rotation of secret {} was turned back",
            entry.secret.as_deref().unwrap_or("?")
        ),
        other => format!("{other} (release {})", entry.release),
    };
    let watch = host.last_watch().filter(|w| {
        [Some(entry.release.as_str()), entry.previous.as_deref()].contains(&w["release"].as_str())
    });
    Some(Event {
        kind,
        text: match &entry.error {
            Some(why) => format!("{what}: {why}"),
            None => what,
        },
        fields: json!({
            "release": entry.release,
            "previous": entry.previous,
            "outcome": entry.outcome.to_string(),
            "action": entry.action.to_string(),
            "reason": entry.error,
            "deployment": entry.deployment,
            "environment": entry.env,
            "secret": entry.secret,
            "by": entry.by,
            "seconds": entry.seconds,
            "watch": watch,
        }),
    })
}

/// Sends `event` to every target within the bound; what happened, for history (none when
/// there is no target).
pub fn send(host: &Host, settings: &NotifySettings, event: &Event) -> Option<String> {
    if settings.webhook.is_none() && settings.sns_topic.is_none() {
        return None;
    }
    let started = Instant::now();
    let name = host.id().unwrap_or_else(|_| "this host".into());
    let mut document = json!({
        "text": format!("hitsave {name}: {}", event.text),
        "event": event.kind,
        "host": name,
        "time": crate::kit::time::now_rfc3339(),
    });
    if let (Some(all), Some(fields)) = (document.as_object_mut(), event.fields.as_object()) {
        all.extend(fields.clone());
    }
    let body = redact(host, &document.to_string());
    let mut said = Vec::new();
    if let Some(url) = &settings.webhook {
        let left = settings.timeout.saturating_sub(started.elapsed());
        said.push(match crate::kit::webhook::post_json(url, &body, left) {
            Ok(n) => format!("webhook: sent ({n} attempt(s))"),
            Err(why) => format!("webhook: NOT sent: {why}"),
        });
    }
    if let Some(topic) = &settings.sns_topic {
        let left = settings.timeout.saturating_sub(started.elapsed());
        said.push(match publish(topic, event.kind, &body, left) {
            Ok(()) => "sns: published".to_owned(),
            Err(why) => format!("sns: NOT published: {why}"),
        });
    }
    let said = format!(
        "{} {} in {:.1} s",
        event.kind,
        said.join("; "),
        started.elapsed().as_secs_f64()
    );
    eprintln!("xtask: notified: {said}");
    Some(said)
}

/// Sends what `entry` tells, if anything; then the disk's, if it is over the line.
pub fn after_change(host: &Host, entry: &HistoryEntry) -> Option<String> {
    let settings = settings_of_host();
    let said = event_of(host, entry).and_then(|event| send(host, &settings, &event));
    disk(host, &settings);
    said
}

/// Tells the team when the install root's filesystem is fuller than HITSAVE_NOTIFY_DISK_PERCENT
/// (85 %), once a day.
pub fn disk(host: &Host, settings: &NotifySettings) {
    let Ok(fs) = nix::sys::statvfs::statvfs(host.root.as_std_path()) else {
        return;
    };
    let total = fs.blocks() as f64;
    let used = total - fs.blocks_available() as f64;
    let percent = if total > 0.0 {
        used * 100.0 / total
    } else {
        0.0
    };
    let mark = host.root.join(".notified-disk");
    let recent = std::fs::metadata(&mark)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|e| e < Duration::from_secs(86_400)));
    let line = settings.disk_percent;
    if percent < line || recent {
        return;
    }
    let event = Event {
        kind: "disk-full",
        text: format!(
            "the disk of {} is {percent:.0} % full (over {line} %): `xtask status` shows what takes it",
            host.root
        ),
        fields: json!({ "disk_percent": percent.round() }),
    };
    if send(host, settings, &event).is_some() {
        let _ = std::fs::write(&mark, crate::kit::time::now_rfc3339());
    }
}

/// `text` with every value of the host's secret files (and their previous values) replaced.
pub fn redact(host: &Host, text: &str) -> String {
    let mut text = text.to_owned();
    let Ok(entries) = std::fs::read_dir(host.secrets_dir()) else {
        return text;
    };
    for entry in entries.flatten() {
        if let Ok(value) = std::fs::read_to_string(entry.path()) {
            let value = value.trim();
            if value.len() >= 6 {
                text = text.replace(value, "[secret]");
            }
        }
    }
    text
}

/// Publishes `message` to the SNS topic `topic` within `bound`.
fn publish(topic: &str, subject: &str, message: &str, bound: Duration) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let work = async {
            let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .load()
                .await;
            aws_sdk_sns::Client::new(&config)
                .publish()
                .topic_arn(topic)
                .subject(format!("hitsave: {subject}"))
                .message(message)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| format!("{}", aws_sdk_sns::error::DisplayErrorContext(&e)))
        };
        tokio::time::timeout(bound, work)
            .await
            .unwrap_or_else(|_| Err("no answer in time".into()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_leave() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::open(camino::Utf8Path::from_path(dir.path()).unwrap()).unwrap();
        std::fs::write(host.secrets_dir().join("jwt_secret"), "s3cr3t-value\n").unwrap();
        let text = redact(&host, r#"{"reason":"password s3cr3t-value refused"}"#);
        assert_eq!(text, r#"{"reason":"password [secret] refused"}"#);
    }
}
