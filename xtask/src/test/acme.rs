//! HTTPS without hands (part of the install suite): a staging host of its own (root, compose
//! project, ports) installs a release with no certificate, against a real ACME server
//! (test/pebble.rs), and must serve `https://staging.hitsave.io`, `www.` and `api.` with the
//! certificate pebble issued; a renewal under HTTPS load drops no request; a challenge that
//! cannot succeed and a CA that is down keep the certificate and the site; hand-placed files
//! are left alone; the private keys are 0600 and appear in no output, history or container.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use camino::Utf8Path;

use crate::test::install::Harness;
use crate::test::pebble::Pebble;
use hitsave_host::site::tls_files::{CertInfo, Files, Kind};

const DOMAIN: &str = "staging.hitsave.io";

/// `release` is in `store` (the install suite's v1); `main` is the install suite's own host
/// (environment `local`), still serving, for the backups of two environments in one store.
pub fn scenario(
    root: &Utf8Path,
    store: &Utf8Path,
    release: &str,
    main: &Harness,
) -> anyhow::Result<()> {
    let (mut h, cleanup) = Harness::fresh(root, "acme")?;
    h.store = store.to_owned();
    let mut pebble = Pebble::start(&h.work, h.port)?;
    let names = hitsave_host::tls::names(DOMAIN);
    let tls_flags = [
        "--acme-directory".to_owned(),
        pebble.directory.clone(),
        "--acme-ca-root".to_owned(),
        pebble.api_root.to_string(),
        "--acme-email".to_owned(),
        "ops@hitsave.io".to_owned(),
    ];
    let mut said = String::new();
    // The team's webhook: failed renewals and expiring certificates are told there.
    let receiver = crate::test::notify::Receiver::start()?;
    let notify = receiver.env();
    let mut run = |args: &[String]| -> anyhow::Result<(bool, String)> {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        eprintln!("xtask: test: acme: xtask {}", args.join(" "));
        let out = h.t.command(&args, &notify).output()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        said.push_str(&text);
        Ok((out.status.success(), text))
    };

    // First issuance, by the install that finds no certificate.
    let mut install = h.install_args(release, &[]);
    let env = install
        .iter()
        .position(|a| a == "local")
        .context("--env local")?;
    install[env] = "staging".into();
    install.extend(["--bind".to_owned(), "127.0.0.1".to_owned()]);
    install.extend(tls_flags.iter().cloned());
    let started = Instant::now();
    let (ok, text) = run(&install)?;
    ensure!(ok, "the first install with ACME:\n{text}");
    let files = Files::new(&h.host_root.join("tls"));
    let Some(first) = files.current() else {
        anyhow::bail!(
            "no certificate after the install:\n{text}\n{}",
            pebble.log_tail()
        );
    };
    ensure!(
        files.kind() == Kind::Issued && first.covers(&names) && first.issuer.contains("Pebble"),
        "the install's certificate: {first:?}"
    );
    let issued_in = seconds_after(&text, "certificate issued in ").unwrap_or(f64::NAN);
    https_ok(&h, &pebble, &names)?;
    https_only(&h, &pebble, &names)?;
    let (_, status) = run(&on_host(&h, &["status", "--json"]))?;
    let (_, doctor) = run(&on_host(&h, &["doctor", "--tls"]))?;
    ensure!(
        doctor.contains("ok: certificate") && doctor.contains("Pebble"),
        "doctor --tls does not show the certificate:\n{doctor}"
    );
    ensure!(
        status.contains("\"certificate\"")
            && status.contains("Pebble")
            && status.contains(&format!("api.{DOMAIN}")),
        "status --json does not show the certificate:\n{status}"
    );
    eprintln!(
        "xtask: test: acme: a first install issued {} in {issued_in:.1} s (install {:.0} s); https serves every name",
        first.describe(),
        started.elapsed().as_secs_f64()
    );

    // Not due: nothing happens.
    let renew = |extra: &[&str]| -> Vec<String> {
        let mut args = on_host(&h, &["tls", "renew"]);
        args.extend(tls_flags.iter().cloned());
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let (ok, text) = run(&renew(&[]))?;
    ensure!(
        ok && text.contains("not due yet"),
        "a renewal that is not due:\n{text}"
    );
    ensure!(
        files.current().as_ref() == Some(&first),
        "a renewal that was not due replaced it"
    );

    // Renewal (due by a threshold longer than the certificate's life) under HTTPS load.
    let load = HttpsLoad::start(&h, &pebble)?;
    let started = Instant::now();
    let (ok, text) = run(&renew(&["--tls-renew-within", "100000"]))?;
    let renewal = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    let (requests, failed, first_failure) = load.stop();
    ensure!(ok, "the renewal:\n{text}");
    let second = files
        .current()
        .context("no certificate after the renewal")?;
    ensure!(
        second != first && second.covers(&names),
        "not renewed: {second:?}"
    );
    ensure!(
        served_not_before(&h, &pebble)? == second.not_before,
        "nginx still serves the old certificate"
    );
    ensure!(
        requests > 50 && failed == 0,
        "{failed} of {requests} HTTPS requests failed during the renewal: {first_failure}"
    );
    eprintln!(
        "xtask: test: acme: renewed in {renewal:.1} s under HTTPS load: {requests} requests, 0 failed; nginx serves the new certificate"
    );

    // A challenge that cannot succeed: the names point where nothing listens.
    pebble.resolve(&names, "127.0.0.2")?;
    let (ok, text) = run(&renew(&["--tls-renew-within", "100000", "--force"]))?;
    pebble.unresolve(&names)?;
    ensure!(
        !ok && text.contains("challenge failed") && text.contains("the current one stays"),
        "a challenge that cannot succeed:\n{text}"
    );
    ensure!(
        files.current().as_ref() == Some(&second),
        "a failed renewal replaced the certificate"
    );
    https_ok(&h, &pebble, &names)?;
    // The backoff: the next attempt waits.
    let (ok, text) = run(&renew(&["--tls-renew-within", "100000"]))?;
    ensure!(
        ok && text.contains("the next one waits"),
        "no backoff after a failure:\n{text}"
    );
    let (_, doctor) = run(&on_host(&h, &["tls", "status"]))?;
    ensure!(
        doctor.contains("the last renewal failed"),
        "tls status after a failure:\n{doctor}"
    );
    eprintln!("xtask: test: acme: a failed challenge keeps the certificate and backs off");

    // The CA is down.
    pebble.stop();
    let (ok, text) = run(&renew(&["--tls-renew-within", "100000", "--force"]))?;
    ensure!(
        !ok && text.contains("cannot reach the ACME server")
            && text.contains("the current one stays"),
        "a CA that is down:\n{text}"
    );
    ensure!(
        files.current().as_ref() == Some(&second),
        "the CA being down changed the certificate"
    );
    https_ok(&h, &pebble, &names)?;
    let told = receiver.events();
    ensure!(
        told.iter()
            .any(|e| e["event"] == "certificate-renewal-failed"
                && e["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("cannot reach the ACME server"))),
        "the failed renewal was not told: {told:?}"
    );
    eprintln!(
        "xtask: test: acme: a CA that is down keeps the certificate; the site serves; the team was told"
    );

    // Hand-placed files, and --tls manual, are left alone.
    let tls = h.host_root.join("tls");
    let chain = std::fs::read(tls.join("fullchain.pem"))?;
    let key = std::fs::read(tls.join("privkey.pem"))?;
    for name in ["fullchain.pem", "privkey.pem"] {
        std::fs::remove_file(tls.join(name))?;
    }
    hitsave_host::kit::files::write_private(
        &tls.join("fullchain.pem"),
        &String::from_utf8(chain.clone())?,
    )?;
    hitsave_host::kit::files::write_private(
        &tls.join("privkey.pem"),
        &String::from_utf8(key.clone())?,
    )?;
    for extra in [&["--force"][..], &["--force", "--tls", "manual"][..]] {
        let (ok, text) = run(&renew(extra))?;
        ensure!(
            ok && (text.contains("placed by hand") || text.contains("--tls manual")),
            "hand-placed files:\n{text}"
        );
        ensure!(
            std::fs::read(tls.join("fullchain.pem"))? == chain
                && std::fs::read(tls.join("privkey.pem"))? == key,
            "hand-placed files were replaced"
        );
    }
    eprintln!("xtask: test: acme: hand-placed certificates and --tls manual are left alone");

    // The private keys: 0600, and in no output, history, container or image.
    // A certificate with two days left: `tls renew` tells the team.
    crate::test::codedeploy::self_signed_tls(&h.host_root, DOMAIN)?;
    let (ok, text) = run(&renew(&["--tls", "manual"]))?;
    ensure!(ok, "tls renew with a hand-placed certificate:\n{text}");
    ensure!(
        receiver
            .events()
            .iter()
            .any(|e| e["event"] == "certificate-expiring"
                && e["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("fewer than 14 days"))),
        "a certificate expiring in two days was not told: {:?}",
        receiver.events()
    );
    eprintln!("xtask: test: acme: a certificate expiring within 14 days was told");
    secrets_stay_private(&h, &said, &key)?;
    crate::test::restore::across_environments(main, &h)?;
    drop(cleanup);
    std::fs::remove_dir_all(&h.work)?;
    Ok(())
}

/// `args` for the acme host's root.
fn on_host(h: &Harness, args: &[&str]) -> Vec<String> {
    args.iter()
        .copied()
        .chain(["--root", h.host_root.as_str()])
        .map(str::to_owned)
        .collect()
}

/// The number after `marker` in `text` (`certificate issued in 4.2 s`).
fn seconds_after(text: &str, marker: &str) -> Option<f64> {
    let at = text.find(marker)? + marker.len();
    text[at..].split_whitespace().next()?.parse().ok()
}

fn curl_https(h: &Harness, pebble: &Pebble, name: &str, path: &str) -> Command {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&pebble.issuer_root)
        .arg("--resolve")
        .arg(format!("{name}:{}:127.0.0.1", h.https_port))
        .arg(format!("https://{name}:{}{path}", h.https_port));
    cmd
}

/// Once a certificate is served: plain HTTP to every site host is sent to https:// with the
/// same path (but ACME's challenges, and the health paths), a balancer's forwarded HTTPS is
/// served on port 80, the HTTPS answers carry the security headers and no version, and
/// sslyze (no one here wrote it) finds the TLS configuration compliant with Mozilla's
/// "intermediate" one: TLS 1.2 and 1.3 only, no cipher outside its list, HSTS.
fn https_only(h: &Harness, pebble: &Pebble, names: &[String]) -> anyhow::Result<()> {
    let plain = |name: &str, path: &str, extra: &[&str]| -> anyhow::Result<(String, String)> {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "-o", "/dev/null", "-D", "-"])
            .args(extra)
            .arg("--resolve")
            .arg(format!("{name}:{}:127.0.0.1", h.port))
            .arg(format!("http://{name}:{}{path}", h.port))
            .output()?;
        let head = String::from_utf8_lossy(&out.stdout).into_owned();
        let status = head.split_whitespace().nth(1).unwrap_or("").to_owned();
        Ok((status, head))
    };
    for name in names {
        let (status, head) = plain(name, "/some/page?x=1", &[])?;
        ensure!(
            status == "301" && head.contains(&format!("Location: https://{name}/some/page?x=1")),
            "http://{name}/some/page?x=1 answered:\n{head}"
        );
        let (status, _) = plain(name, "/.well-known/acme-challenge/no-such-token", &[])?;
        ensure!(
            status == "404",
            "an ACME challenge path on {name}:80 answered {status}"
        );
    }
    for (path, want) in [("/nginx-health", "200"), ("/lb-health", "200")] {
        let (status, _) = plain("127.0.0.1", path, &[])?;
        ensure!(status == want, "{path} on port 80 answered {status}");
    }
    let body = hitsave_host::kit::http::get(h.port, "127.0.0.1", "/lb-health");
    ensure!(
        body.as_ref()
            .is_some_and(|(s, b)| *s == 200 && b == "ready\n"),
        "/lb-health says more than `ready`: {body:?}"
    );
    // Through a TLS-terminating balancer (X-Forwarded-Proto: https from a private address).
    let (status, head) = plain(&names[0], "/", &["-H", "X-Forwarded-Proto: https"])?;
    ensure!(
        status == "200" && head.contains("Strict-Transport-Security: max-age=86400"),
        "a balancer's forwarded HTTPS request on port 80:\n{head}"
    );
    let out = curl_https(h, pebble, &names[0], "/")
        .args(["-o", "/dev/null", "-D", "-"])
        .output()?;
    let head = String::from_utf8_lossy(&out.stdout);
    for header in [
        "Strict-Transport-Security: max-age=86400",
        "X-Content-Type-Options: nosniff",
        "Referrer-Policy: strict-origin-when-cross-origin",
        "Content-Security-Policy: frame-ancestors 'none'",
        "Server: nginx\r\n",
    ] {
        ensure!(
            head.contains(header),
            "HTTPS answers lack {header:?}:\n{head}"
        );
    }

    let sslyze = crate::tools::tls_scanner()?;
    let report = h.work.join("sslyze.json");
    let out = Command::new(&sslyze)
        .args([
            "--mozilla_config=intermediate",
            "--http_headers",
            "--certinfo_ca_file",
        ])
        .arg(&pebble.issuer_root)
        .arg(format!("--json_out={report}"))
        .arg(format!("{}:{}{{127.0.0.1}}", names[0], h.https_port))
        .output()?;
    let said = String::from_utf8_lossy(&out.stdout);
    let compliance = said
        .split("COMPLIANCE AGAINST TLS CONFIGURATION")
        .nth(1)
        .unwrap_or(&said)
        .trim();
    ensure!(
        out.status.success(),
        "sslyze finds the TLS configuration not compliant with Mozilla's intermediate one:\n{compliance}"
    );
    // The report holds certificate serial numbers past serde_json's integers: sslyze's own
    // Python reads out what the test looks at.
    let python = sslyze.with_file_name("python");
    let summary = Command::new(&python)
        .arg("-c")
        .arg(
            "import json, sys\n\
             r = json.load(open(sys.argv[1]))['server_scan_results'][0]['scan_result']\n\
             out = {k: [c['cipher_suite']['name'] for c in (r[k]['result'] or {}).get('accepted_cipher_suites', [])]\n\
                    for k in r if k.endswith('_cipher_suites')}\n\
             out['hsts'] = ((r['http_headers']['result'] or {}).get('strict_transport_security_header') or {})\n\
             print(json.dumps(out))",
        )
        .arg(&report)
        .output()?;
    ensure!(
        summary.status.success(),
        "cannot read sslyze's report: {}",
        String::from_utf8_lossy(&summary.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&summary.stdout)?;
    let accepted = |scan: &str| -> Vec<String> {
        result[scan]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    for old in [
        "ssl_2_0_cipher_suites",
        "ssl_3_0_cipher_suites",
        "tls_1_0_cipher_suites",
        "tls_1_1_cipher_suites",
    ] {
        ensure!(accepted(old).is_empty(), "{old}: {:?}", accepted(old));
    }
    let hsts = &result["hsts"];
    ensure!(
        hsts["max_age"] == 86400,
        "sslyze sees no HSTS with a day's max-age: {hsts}"
    );
    eprintln!(
        "xtask: test: acme: http:// answers 301 to https:// on every name (challenges and health paths excepted); sslyze: {compliance}; TLS 1.2 suites {:?}, TLS 1.3 suites {:?}, HSTS max-age {}",
        accepted("tls_1_2_cipher_suites"),
        accepted("tls_1_3_cipher_suites"),
        hsts["max_age"]
    );
    Ok(())
}

/// Every name answers over HTTPS with a certificate pebble's root vouches for.
fn https_ok(h: &Harness, pebble: &Pebble, names: &[String]) -> anyhow::Result<()> {
    for name in names {
        let path = if name.starts_with("api.") {
            "/health"
        } else {
            "/"
        };
        let out = curl_https(h, pebble, name, path)
            .args(["-o", "/dev/null", "-w", "%{http_code}"])
            .output()?;
        let code = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success() && code == "200",
            "https://{name}{path}: {code} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The notBefore of the certificate nginx serves now.
fn served_not_before(h: &Harness, _pebble: &Pebble) -> anyhow::Result<u64> {
    let out = Command::new("openssl")
        .args(["s_client", "-connect"])
        .arg(format!("127.0.0.1:{}", h.https_port))
        .args(["-servername", DOMAIN, "-showcerts"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()?;
    CertInfo::parse(&out.stdout)
        .context("openssl s_client showed no certificate")
        .map(|c| c.not_before)
}

/// Four clients, each on one kept-alive HTTPS connection at a time (100 requests per
/// connection), until stopped: the reload must let open connections finish and give new
/// ones the new certificate, with no request lost.
struct HttpsLoad {
    stop: std::sync::Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    requests: std::sync::Arc<AtomicU64>,
    failed: std::sync::Arc<AtomicU64>,
    first_failure: std::sync::Arc<std::sync::Mutex<String>>,
}

impl HttpsLoad {
    fn start(h: &Harness, pebble: &Pebble) -> anyhow::Result<HttpsLoad> {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let requests = std::sync::Arc::new(AtomicU64::new(0));
        let failed = std::sync::Arc::new(AtomicU64::new(0));
        let first_failure = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut threads = Vec::new();
        for n in 0..4 {
            let name = hitsave_host::tls::names(DOMAIN)[n % 3].clone();
            let path = if name.starts_with("api.") {
                "/health"
            } else {
                "/"
            };
            let url = format!("https://{name}:{}{path}", h.https_port);
            let (resolve, root) = (
                format!("{name}:{}:127.0.0.1", h.https_port),
                pebble.issuer_root.clone(),
            );
            let (stop, requests, failed, first_failure) = (
                stop.clone(),
                requests.clone(),
                failed.clone(),
                first_failure.clone(),
            );
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let mut cmd = Command::new("curl");
                    cmd.args(["-s", "--max-time", "10", "--cacert"])
                        .arg(&root)
                        .args(["--resolve", &resolve, "-w", "%{http_code}\\n"]);
                    // Each URL needs its own -o, or the bodies after the first go to stdout.
                    for _ in 0..100 {
                        cmd.args(["-o", "/dev/null", &url]);
                    }
                    let Ok(out) = cmd.output() else { continue };
                    let codes = String::from_utf8_lossy(&out.stdout);
                    let answered = codes.lines().count() as u64;
                    let ok = codes.lines().filter(|c| *c == "200").count() as u64;
                    requests.fetch_add(100, Ordering::Relaxed);
                    let bad = 100 - ok;
                    if bad > 0 {
                        failed.fetch_add(bad, Ordering::Relaxed);
                        let mut first = first_failure.lock().expect("not poisoned");
                        if first.is_empty() {
                            *first = format!(
                                "{url}: {answered} answers, codes {:?}, curl exit {:?}",
                                codes
                                    .lines()
                                    .filter(|c| *c != "200")
                                    .take(3)
                                    .collect::<Vec<_>>(),
                                out.status.code()
                            );
                        }
                    }
                }
            }));
        }
        // The load is running before the renewal starts.
        std::thread::sleep(Duration::from_secs(1));
        Ok(HttpsLoad {
            stop,
            threads,
            requests,
            failed,
            first_failure,
        })
    }

    fn stop(self) -> (u64, u64, String) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        let first = self.first_failure.lock().expect("not poisoned").clone();
        (
            self.requests.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            first,
        )
    }
}

/// The certificate's private key and the ACME account key are 0600 in 0700 directories, and
/// the key's body is in no command's output, history.jsonl, container configuration or log.
fn secrets_stay_private(h: &Harness, said: &str, key: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let tls = h.host_root.join("tls");
    for entry in walkdir::WalkDir::new(&tls) {
        let entry = entry?;
        let meta = std::fs::symlink_metadata(entry.path())?;
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o777;
        let want = if meta.is_dir() { 0o700 } else { 0o600 };
        ensure!(
            mode & 0o077 == 0,
            "{} is mode {mode:04o}, not {want:04o}",
            entry.path().display()
        );
    }
    let body: String = String::from_utf8_lossy(key)
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .take(1)
        .collect();
    ensure!(body.len() > 40, "the key has no body to look for");
    let mut haystack = said.to_owned();
    haystack.push_str(&std::fs::read_to_string(h.host_root.join("history.jsonl"))?);
    let ids = String::from_utf8(
        Command::new("docker")
            .args(["ps", "-aq", "--filter"])
            .arg(format!("label=com.docker.compose.project={}", h.project()))
            .output()?
            .stdout,
    )?;
    let mut images: Vec<String> = Vec::new();
    for id in ids.split_whitespace() {
        let image = Command::new("docker")
            .args(["inspect", "--format", "{{.Image}}", id])
            .output()?;
        images.push(String::from_utf8_lossy(&image.stdout).trim().to_owned());
    }
    images.sort();
    images.dedup();
    for image in &images {
        for args in [
            vec!["image", "inspect", image.as_str()],
            vec!["history", "--no-trunc", image.as_str()],
        ] {
            let out = Command::new("docker").args(&args).output()?;
            haystack.push_str(&String::from_utf8_lossy(&out.stdout));
        }
    }
    for id in ids.split_whitespace() {
        for args in [vec!["inspect", id], vec!["logs", id]] {
            let out = Command::new("docker").args(&args).output()?;
            haystack.push_str(&String::from_utf8_lossy(&out.stdout));
            haystack.push_str(&String::from_utf8_lossy(&out.stderr));
        }
    }
    ensure!(
        !haystack.contains(&body),
        "the certificate's private key appears in output, history, a container or an image"
    );
    eprintln!(
        "xtask: test: acme: keys are 0600 in 0700 directories and in no output, history.jsonl, container configuration or log, or the {} images' configuration and layers' history ({} KiB searched)",
        images.len(),
        haystack.len() / 1024
    );
    Ok(())
}
