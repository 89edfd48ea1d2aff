//! Notifications (part of the install suite): a local HTTP receiver on 127.0.0.1 stands for
//! the team's webhook. The install suite's host sends it one notification per event (the
//! watch's deploys, a failed backup, a failed restore drill, a secret rotation, the disk over
//! its line), each with the facts, and no secret value of the host in any of them; a receiver
//! that hangs or answers 500 delays the change by no more than the bound, and history says
//! the notification was not sent. Then SNS: moto's topic on 127.0.0.1 gets the same document
//! and posts it on to its subscriber.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::Value;

use crate::test::install::Harness;

/// How the receiver answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Ok = 0,
    Fail = 1,
    Hang = 2,
}

/// A webhook receiver on 127.0.0.1 that keeps every body it was sent.
pub(crate) struct Receiver {
    port: u16,
    bodies: Arc<Mutex<Vec<String>>>,
    mode: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    pub(crate) fn start() -> anyhow::Result<Receiver> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let receiver = Receiver {
            port,
            bodies: Arc::default(),
            mode: Arc::new(AtomicU8::new(Mode::Ok as u8)),
            stop: Arc::default(),
        };
        let (bodies, mode, stop) = (
            receiver.bodies.clone(),
            receiver.mode.clone(),
            receiver.stop.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (bodies, mode) = (bodies.clone(), mode.load(Ordering::SeqCst));
                        std::thread::spawn(move || answer(stream, &bodies, mode));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(receiver)
    }

    /// What a host command needs to send here, and to see its disk as full.
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "HITSAVE_NOTIFY_WEBHOOK",
                format!("http://127.0.0.1:{}/hooks/team", self.port),
            ),
            ("HITSAVE_NOTIFY_DISK_PERCENT", "1".into()),
        ]
    }

    /// Its address, for a subscription.
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(crate) fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Every notification taken so far, parsed.
    pub(crate) fn events(&self) -> Vec<Value> {
        self.bodies
            .lock()
            .expect("the receiver's lock")
            .iter()
            .filter_map(|b| serde_json::from_str(b).ok())
            .collect()
    }

    fn all_text(&self) -> String {
        self.bodies.lock().expect("the receiver's lock").join("\n")
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Reads one request; keeps its body and answers as `mode` says.
fn answer(mut stream: std::net::TcpStream, bodies: &Mutex<Vec<String>>, mode: u8) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let body = loop {
        let Ok(n) = stream.read(&mut buf) else { return };
        if n == 0 {
            return;
        }
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let length = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        if body.len() >= length {
            break body.to_owned();
        }
    };
    bodies.lock().expect("the receiver's lock").push(body);
    let reply: &[u8] = match mode {
        0 => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        1 => {
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        }
        _ => {
            std::thread::sleep(Duration::from_secs(30));
            return;
        }
    };
    let _ = stream.write_all(reply);
}

/// The events of `kind` the receiver took.
fn of_kind(receiver: &Receiver, kind: &str) -> Vec<Value> {
    receiver
        .events()
        .into_iter()
        .filter(|e| e["event"] == kind)
        .collect()
}

/// After the watch's installs (which were sent here): their events, then a failed deploy, a
/// failed backup, a failed drill, a rotation, the disk, no secret anywhere, and the bound.
/// `v1` was the healthy release the watch passed (after `bad`, rolled back to v2); `v4`'s
/// migration fails.
pub(crate) fn scenario(
    h: &Harness,
    receiver: &Receiver,
    v1: &str,
    bad: &str,
    v4: &str,
) -> anyhow::Result<()> {
    let env = receiver.env();
    let rolled = of_kind(receiver, "deploy-rolled-back");
    ensure!(
        rolled.len() == 1
            && rolled[0]["release"] == bad
            && rolled[0]["previous"].is_string()
            && rolled[0]["watch"]["verdict"] == "failed"
            && rolled[0]["text"]
                .as_str()
                .is_some_and(|t| t.contains("failed its watch"))
            && rolled[0]["host"]
                .as_str()
                .is_some_and(|h| h.starts_with("test-")),
        "the watch's rollback was told as: {rolled:?}"
    );
    let deployed = of_kind(receiver, "deploy-succeeded");
    ensure!(
        deployed.len() == 2 && deployed.iter().any(|e| e["release"] == v1),
        "the two good deploys were told as: {deployed:?}"
    );

    // A deploy that fails before its cutover (its migration fails; nothing was swapped).
    let out = h.install_with(v4, &[], &env)?;
    ensure!(!out.status.success(), "v4 installed");
    let failed = of_kind(receiver, "deploy-failed");
    ensure!(
        failed.len() == 1
            && failed[0]["release"] == v4
            && failed[0]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("20991231000000")),
        "the failed deploy was told as: {failed:?}"
    );

    // A backup the store refuses, then a drill of a damaged backup.
    let broken = broken_store(h)?;
    let err =
        h.t.fails(&h.host_args(&["backup", "--store", broken.as_str()]), &env)?;
    ensure!(
        !of_kind(receiver, "backup-failed").is_empty(),
        "a failed backup was not told:\n{err}"
    );
    let record: Value = serde_json::from_slice(&h.ok(&h.host_args(&["backup", "--json"]))?)?;
    let id = record["id"].as_str().context("no backup id")?.to_owned();
    let dump = h.host_root.join(format!("backups/{id}.dump"));
    let bytes = std::fs::read(&dump)?;
    std::fs::write(&dump, &bytes[..bytes.len() / 2])?;
    h.t.fails(&h.host_args(&["backup", "verify", &id]), &env)?;
    for ext in ["dump", "json"] {
        std::fs::remove_file(h.host_root.join(format!("backups/{id}.{ext}")))?;
    }
    let drill = of_kind(receiver, "drill-failed");
    ensure!(
        drill.len() == 1 && drill[0]["backup"] == id.as_str(),
        "the failed drill was told as: {drill:?}"
    );

    // A rotation, told when it is done; the disk (its line set to 1 % here) once a day.
    let mut rotate = h.t.command(
        // --force: the secrets test's turned-back rotation left a grace period running.
        &h.host_args(&[
            "secrets",
            "rotate",
            "jwt_secret",
            "--grace",
            "5s",
            "--force",
        ]),
        &env,
    );
    let out = rotate.output()?;
    ensure!(
        out.status.success(),
        "secrets rotate jwt_secret:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        of_kind(receiver, "secret-rotation-finished")
            .iter()
            .any(|e| e["secret"] == "jwt_secret"),
        "the rotation was not told"
    );
    let disk = of_kind(receiver, "disk-full");
    ensure!(
        disk.len() == 1 && disk[0]["disk_percent"].as_f64().is_some(),
        "the disk was told {} times (once a day): {disk:?}",
        disk.len()
    );

    // No secret value of the host (current or previous) in anything sent.
    no_secret_in(h, &receiver.all_text())?;
    eprintln!(
        "xtask: test: notify: {} notifications (deploys, rollback with the watch's figures, backup, drill, rotation, disk), no secret value in any",
        receiver.events().len()
    );
    bounded(h, receiver)?;
    published(h)
}

/// A host whose settings name an SNS topic (moto's, on 127.0.0.1, whose topic posts to a
/// second receiver): the failed backup is published there, the same document as the webhook
/// gets, with no secret value.
fn published(h: &Harness) -> anyhow::Result<()> {
    let moto = crate::test::moto::Moto::start()?;
    let inbox = Receiver::start()?;
    let topic = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let config = aws_sdk_sns::Config::builder()
                .behavior_version(aws_sdk_sns::config::BehaviorVersion::latest())
                .region(aws_sdk_sns::config::Region::new("us-east-1"))
                .endpoint_url(&moto.endpoint)
                .credentials_provider(aws_sdk_sns::config::Credentials::new(
                    "test", "test", None, None, "test",
                ))
                .build();
            let sns = aws_sdk_sns::Client::from_conf(config);
            let topic = sns.create_topic().name("hitsave-team").send().await?;
            let arn = topic.topic_arn().context("no topic ARN")?.to_owned();
            sns.subscribe()
                .topic_arn(&arn)
                .protocol("http")
                .endpoint(inbox.url("/sns"))
                .send()
                .await?;
            anyhow::Ok(arn)
        })?;
    let env = vec![
        ("HITSAVE_NOTIFY_SNS_TOPIC", topic.clone()),
        ("AWS_ENDPOINT_URL_SNS", moto.endpoint.clone()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
    ];
    h.t.fails(
        &h.host_args(&["backup", "--store", broken_store(h)?.as_str()]),
        &env,
    )?;
    let notified = h.last_history()?["notified"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    ensure!(
        notified.contains("sns: published"),
        "history says {notified:?}"
    );
    let envelopes = inbox.events();
    let message: Value = envelopes
        .iter()
        .find(|e| e["TopicArn"] == topic.as_str())
        .and_then(|e| serde_json::from_str(e["Message"].as_str()?).ok())
        .with_context(|| format!("moto posted no notification of {topic}: {envelopes:?}"))?;
    ensure!(
        message["event"] == "backup-failed"
            && envelopes
                .iter()
                .any(|e| e["Subject"] == "hitsave: backup-failed"),
        "the topic got: {envelopes:?}"
    );
    no_secret_in(h, &inbox.all_text())?;
    eprintln!(
        "xtask: test: notify: the failed backup was published to moto's SNS topic {topic} and delivered to its subscriber ({notified})"
    );
    Ok(())
}

/// No value of the host's secret files (current or previous) in `sent`.
fn no_secret_in(h: &Harness, sent: &str) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(h.host_root.join("secrets"))? {
        let entry = entry?;
        let value = std::fs::read_to_string(entry.path())?;
        let value = value.trim();
        ensure!(
            value.len() < 6 || !sent.contains(value),
            "the value of {:?} was sent",
            entry.file_name()
        );
    }
    Ok(())
}

/// A store whose backups/ is a file: a backup's upload to it fails.
fn broken_store(h: &Harness) -> anyhow::Result<camino::Utf8PathBuf> {
    let store = h.work.join("broken-store");
    std::fs::create_dir_all(&store)?;
    std::fs::write(store.join("backups"), "not a directory\n")?;
    Ok(store)
}

/// A receiver that hangs, then one that answers 500: the change waits the bound at most, and
/// its history line says the notification was not sent.
fn bounded(h: &Harness, receiver: &Receiver) -> anyhow::Result<()> {
    let mut env = receiver.env();
    env.push(("HITSAVE_NOTIFY_TIMEOUT", "2".into()));
    for (mode, says) in [
        (Mode::Hang, "no answer in time"),
        (Mode::Fail, "answered 500"),
    ] {
        receiver.set_mode(mode);
        let started = Instant::now();
        h.t.fails(
            &h.host_args(&["backup", "--store", broken_store(h)?.as_str()]),
            &env,
        )?;
        let took = started.elapsed();
        let last = h.last_history()?;
        let notified = last["notified"].as_str().unwrap_or_default().to_owned();
        let seconds: f64 = notified
            .rsplit(" in ")
            .next()
            .and_then(|s| s.trim_end_matches(" s").parse().ok())
            .unwrap_or(99.0);
        ensure!(
            notified.contains("NOT sent") && notified.contains(says) && seconds <= 2.5,
            "a receiver in mode {mode:?}: history says {notified:?}"
        );
        eprintln!(
            "xtask: test: notify: a receiver in mode {mode:?} delayed the failed backup by {seconds:.1} s (bound 2 s; the command took {:.1} s): {notified}",
            took.as_secs_f64()
        );
    }
    receiver.set_mode(Mode::Ok);
    Ok(())
}
