//! A real ACME server for the tests: Debian's `pebble` (Let's Encrypt's test CA) on
//! 127.0.0.1, with `pebble-challtestsrv` as its DNS server (every name resolves to 127.0.0.1
//! unless a test says otherwise). Pebble validates HTTP-01 challenges on `http_port`, where
//! the test's nginx listens. Its defaults stay on: some good nonces are rejected and each
//! validation is delayed (PEBBLE_VA_SLEEPTIME, a few seconds here), so the client's retries
//! and polling are exercised. Both are stopped by pid when dropped.

use std::process::Command;
use std::time::Duration;

use anyhow::ensure;
use camino::{Utf8Path, Utf8PathBuf};

use crate::child::{Child, free_port, on_free_ports};
use crate::tools;
use hitsave_host::kit::process::wait_until;

pub struct Pebble {
    pebble: Option<Child>,
    /// Its DNS server (pebble-challtestsrv), which answers every name with 127.0.0.1.
    challtestsrv: Child,
    /// The ACME directory URL.
    pub directory: String,
    /// The root that signs pebble's own HTTPS (for the ACME client).
    pub api_root: Utf8PathBuf,
    /// The root that signs the certificates pebble issues (for the test's HTTPS clients).
    pub issuer_root: Utf8PathBuf,
    management: u16,
    dns_management: u16,
    /// Where pebble and its DNS server write their logs.
    dir: Utf8PathBuf,
}

impl Pebble {
    /// Starts the DNS server and pebble, validating HTTP-01 on 127.0.0.1:`http_port`.
    pub fn start(work: &Utf8Path, http_port: u16) -> anyhow::Result<Pebble> {
        let pebble = tools::require("pebble", "pebble")?;
        let challtestsrv = tools::require("pebble-challtestsrv", "pebble")?;
        on_free_ports("pebble", || {
            Pebble::start_with(&pebble, &challtestsrv, work, http_port)
        })
    }

    fn start_with(
        pebble: &Utf8Path,
        challtestsrv: &Utf8Path,
        work: &Utf8Path,
        http_port: u16,
    ) -> anyhow::Result<Pebble> {
        let dir = work.join("pebble");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let api_root = https_certificate(&dir)?;
        let (dns, dns_management) = (free_port()?, free_port()?);
        let dns_child = Child::spawn_logged(
            "pebble-challtestsrv",
            Command::new(challtestsrv)
                .args(["-dns01", &format!("127.0.0.1:{dns}")])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args(["-management", &format!("127.0.0.1:{dns_management}")])
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""]),
            dir.join("challtestsrv.log"),
        )?;
        let (listen, management) = (free_port()?, free_port()?);
        let config = dir.join("pebble-config.json");
        std::fs::write(
            &config,
            serde_json::to_vec_pretty(&serde_json::json!({
                "pebble": {
                    "listenAddress": format!("127.0.0.1:{listen}"),
                    "managementListenAddress": format!("127.0.0.1:{management}"),
                    "certificate": dir.join("pebble.crt").as_str(),
                    "privateKey": dir.join("pebble.key").as_str(),
                    "httpPort": http_port,
                    "tlsPort": free_port()?,
                    "ocspResponderURL": "",
                    // 90 days, as Let's Encrypt issues (pebble's own default is five years).
                    "certificateValidityPeriod": 7_776_000,
                    "externalAccountBindingRequired": false
                }
            }))?,
        )?;
        let child = Child::spawn_logged(
            "pebble",
            Command::new(pebble)
                .args(["-config", config.as_str()])
                .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
                .env("PEBBLE_VA_SLEEPTIME", "3")
                // Every order gets fresh authorizations: a challenge meant to fail must run.
                .env("PEBBLE_AUTHZREUSE", "0"),
            dir.join("pebble.log"),
        )?;
        let mut kit = Pebble {
            pebble: Some(child),
            challtestsrv: dns_child,
            directory: format!("https://127.0.0.1:{listen}/dir"),
            issuer_root: dir.join("issuer-root.pem"),
            api_root,
            management,
            dns_management,
            dir: dir.clone(),
        };
        wait_until("pebble", Duration::from_secs(30), || {
            kit.challtestsrv.check_running()?;
            if let Some(p) = kit.pebble.as_mut() {
                p.check_running()?;
            }
            Ok(kit.curl(&[&kit.directory]).is_ok())
        })?;
        let root = kit.curl(&[&format!("https://127.0.0.1:{}/roots/0", kit.management)])?;
        std::fs::write(&kit.issuer_root, root)?;
        Ok(kit)
    }

    fn curl(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new("curl")
            .args(["-fsS", "--max-time", "10", "--cacert"])
            .arg(&self.api_root)
            .args(args)
            .output()?;
        ensure!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Makes `names` resolve to `address` for pebble (say, one where nothing listens).
    pub fn resolve(&self, names: &[String], address: &str) -> anyhow::Result<()> {
        for name in names {
            self.dns(
                "add-a",
                serde_json::json!({ "host": format!("{name}."), "addresses": [address] }),
            )?;
        }
        Ok(())
    }

    /// Back to the default answer (127.0.0.1) for `names`.
    pub fn unresolve(&self, names: &[String]) -> anyhow::Result<()> {
        for name in names {
            self.dns("clear-a", serde_json::json!({ "host": format!("{name}.") }))?;
        }
        Ok(())
    }

    /// One call to challtestsrv's management API.
    fn dns(&self, call: &str, body: serde_json::Value) -> anyhow::Result<()> {
        let status = Command::new("curl")
            .args(["-fsS", "-o", "/dev/null", "-X", "POST", "-d"])
            .arg(body.to_string())
            .arg(format!("http://127.0.0.1:{}/{call}", self.dns_management))
            .status()?;
        ensure!(status.success(), "challtestsrv refused {call} {body}");
        Ok(())
    }

    /// The last lines of pebble's log and its DNS server's: what the CA saw, for a test's error.
    pub fn log_tail(&self) -> String {
        ["pebble.log", "challtestsrv.log"]
            .iter()
            .map(|name| {
                let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(30)..].join("\n");
                format!("--- the last lines of {name}:\n{tail}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Stops pebble (the CA goes down); the DNS server stays.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.pebble.take() {
            p.stop();
        }
    }
}

/// A CA and a certificate for 127.0.0.1 signed by it, for pebble's own HTTPS (rustls does not
/// take a self-signed leaf as a root). Returns the CA's file.
fn https_certificate(dir: &Utf8Path) -> anyhow::Result<Utf8PathBuf> {
    let ca = crate::test::certs::ca(dir, "/CN=hitsave test pebble CA")?;
    crate::test::certs::signed(dir, "pebble", "/CN=127.0.0.1", "IP:127.0.0.1,DNS:localhost")?;
    Ok(ca)
}
