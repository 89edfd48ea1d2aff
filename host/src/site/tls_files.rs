//! The certificate files under `<root>/tls/`, and what a certificate says.
//!
//! Issued certificates live in `live/<stamp>/` (fullchain.pem, privkey.pem, both 0600);
//! `current` is a link to one of them, and `fullchain.pem` and `privkey.pem` are fixed links
//! through it. Replacing `current` (a new link renamed over it) swaps the pair at once, so
//! nginx never reads a certificate with another one's key. Hand-placed files are regular
//! files, and are never touched.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use camino::{Utf8Path, Utf8PathBuf};

/// What a certificate is for, who issued it, and when it is valid.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertInfo {
    /// Its subject alternative names (DNS).
    pub names: Vec<String>,
    pub issuer: String,
    /// Seconds since the epoch.
    pub not_before: u64,
    pub not_after: u64,
}

impl CertInfo {
    /// Reads the first certificate of a PEM chain.
    pub fn read(path: &Utf8Path) -> anyhow::Result<CertInfo> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {path}"))?;
        CertInfo::parse(&bytes).with_context(|| format!("{path} holds no usable certificate"))
    }

    pub fn parse(pem: &[u8]) -> anyhow::Result<CertInfo> {
        let (_, pem) =
            x509_parser::pem::parse_x509_pem(pem).map_err(|e| anyhow::anyhow!("not PEM: {e}"))?;
        let cert = pem
            .parse_x509()
            .map_err(|e| anyhow::anyhow!("not an X.509 certificate: {e}"))?;
        let names = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let validity = cert.validity();
        Ok(CertInfo {
            names,
            issuer: cert.issuer().to_string(),
            not_before: validity.not_before.timestamp().max(0) as u64,
            not_after: validity.not_after.timestamp().max(0) as u64,
        })
    }

    /// Time left until it expires (zero once it has).
    pub fn remaining(&self) -> Duration {
        Duration::from_secs(self.not_after.saturating_sub(now()))
    }

    pub fn lifetime(&self) -> Duration {
        Duration::from_secs(self.not_after.saturating_sub(self.not_before))
    }

    /// Whether it covers every name in `names`.
    pub fn covers(&self, names: &[String]) -> bool {
        names.iter().all(|n| self.names.contains(n))
    }

    /// `hitsave.io, www.hitsave.io (issuer ..., expires in 89 days, 2027-03-01T...)`.
    pub fn describe(&self) -> String {
        format!(
            "{} (issuer {}, expires {} in {:.0} days)",
            self.names.join(", "),
            self.issuer,
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(self.not_after)),
            self.remaining().as_secs_f64() / 86_400.0
        )
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The certificate files of one install root.
pub struct Files {
    pub dir: Utf8PathBuf,
}

/// Who looks after the certificate in `tls/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// No certificate yet.
    None,
    /// Issued by xtask (links into live/).
    Issued,
    /// Regular files someone put there.
    HandPlaced,
}

impl Files {
    pub fn new(dir: &Utf8Path) -> Files {
        Files {
            dir: dir.to_owned(),
        }
    }

    pub fn fullchain(&self) -> Utf8PathBuf {
        self.dir.join("fullchain.pem")
    }

    pub fn kind(&self) -> Kind {
        match std::fs::symlink_metadata(self.fullchain()) {
            Err(_) => Kind::None,
            Ok(m) if m.file_type().is_symlink() => Kind::Issued,
            Ok(_) => Kind::HandPlaced,
        }
    }

    /// Both files are there and readable (what nginx needs to serve HTTPS).
    pub fn present(&self) -> bool {
        self.fullchain().is_file() && self.dir.join("privkey.pem").is_file()
    }

    /// The certificate nginx serves, if any.
    pub fn current(&self) -> Option<CertInfo> {
        self.present()
            .then(|| CertInfo::read(&self.fullchain()).ok())
            .flatten()
    }

    /// Puts a new certificate and key in place: written 0600 into live/<stamp>/, then
    /// `current` swapped to it by rename. Older live/ directories but the previous one go.
    pub fn install(&self, chain_pem: &str, key_pem: &str) -> anyhow::Result<()> {
        if self.kind() == Kind::HandPlaced {
            bail!(
                "{} is a hand-placed certificate: xtask never replaces one",
                self.fullchain()
            );
        }
        let live = self.dir.join("live");
        crate::kit::files::create_private_dir(&self.dir)?;
        crate::kit::files::create_private_dir(&live)?;
        let base = crate::kit::time::utc_stamp();
        let stamp = (0..)
            .map(|n| {
                if n == 0 {
                    base.clone()
                } else {
                    format!("{base}-{n}")
                }
            })
            .find(|s| !live.join(s).exists())
            .expect("a free name");
        let new = live.join(&stamp);
        crate::kit::files::create_private_dir(&new)?;
        crate::kit::files::write_private(&new.join("privkey.pem"), key_pem)?;
        crate::kit::files::write_private(&new.join("fullchain.pem"), chain_pem)?;
        let previous = std::fs::read_link(self.dir.join("current")).ok();
        let tmp = self.dir.join(".current.new");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(format!("live/{stamp}"), &tmp)?;
        std::fs::rename(&tmp, self.dir.join("current"))
            .with_context(|| format!("cannot switch {}/current", self.dir))?;
        for name in ["fullchain.pem", "privkey.pem"] {
            let link = self.dir.join(name);
            if std::fs::read_link(&link).ok().as_deref()
                != Some(std::path::Path::new(&format!("current/{name}")))
            {
                let tmp = self.dir.join(format!(".{name}.new"));
                let _ = std::fs::remove_file(&tmp);
                std::os::unix::fs::symlink(format!("current/{name}"), &tmp)?;
                std::fs::rename(&tmp, &link)?;
            }
        }
        // Keep the new one and the one before it (a reload in flight may still read it).
        let keep: Vec<String> = [
            Some(format!("live/{stamp}")),
            previous.map(|p| p.display().to_string()),
        ]
        .into_iter()
        .flatten()
        .collect();
        for entry in live.read_dir_utf8()? {
            let entry = entry?;
            if !keep.contains(&format!("live/{}", entry.file_name())) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A certificate for `names` and its key, made with rcgen (what the CA's would look like).
    pub(crate) fn self_signed(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    #[test]
    fn issued_pairs_swap_at_once_and_hand_placed_files_stay() {
        let dir = tempfile::tempdir().unwrap();
        let tls = Utf8Path::from_path(dir.path()).unwrap().join("tls");
        let files = Files::new(&tls);
        assert_eq!(files.kind(), Kind::None);
        assert!(files.current().is_none());
        let (chain, key) = self_signed(&["hitsave.io", "www.hitsave.io", "api.hitsave.io"]);
        files.install(&chain, &key).unwrap();
        assert_eq!(files.kind(), Kind::Issued);
        let info = files.current().unwrap();
        assert!(info.covers(&crate::tls::names("hitsave.io")));
        assert!(info.remaining() > Duration::from_secs(86_400));
        for path in [tls.join("privkey.pem"), tls.join("fullchain.pem")] {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{path}");
        }
        let mode = std::fs::metadata(&tls).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // A second one: the links now lead to it, the first is kept as the previous one.
        let (chain2, key2) = self_signed(&["hitsave.io"]);
        files.install(&chain2, &key2).unwrap();
        assert_eq!(
            std::fs::read_to_string(tls.join("privkey.pem")).unwrap(),
            key2
        );
        assert_eq!(
            std::fs::read_to_string(tls.join("fullchain.pem")).unwrap(),
            chain2
        );
        assert_eq!(tls.join("live").read_dir().unwrap().count(), 2);
        files.install(&chain, &key).unwrap();
        assert_eq!(
            tls.join("live").read_dir().unwrap().count(),
            2,
            "older ones go"
        );
        // Hand-placed files are never replaced.
        for name in ["fullchain.pem", "privkey.pem"] {
            std::fs::remove_file(tls.join(name)).unwrap();
        }
        std::fs::write(tls.join("fullchain.pem"), &chain2).unwrap();
        std::fs::write(tls.join("privkey.pem"), &key2).unwrap();
        assert_eq!(files.kind(), Kind::HandPlaced);
        let err = files.install(&chain, &key).unwrap_err().to_string();
        assert!(err.contains("hand-placed"), "{err}");
        assert_eq!(
            std::fs::read_to_string(tls.join("privkey.pem")).unwrap(),
            key2
        );
        assert!(CertInfo::parse(b"not a certificate").is_err());
    }
}
