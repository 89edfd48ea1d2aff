//! What `cargo xtask dev` prepares before it starts anything: local secrets, the /etc/hosts lines for hitsave-local.io, and the nginx site that routes
//! the three names to the processes running natively on the laptop.

use anyhow::Context;
use camino::Utf8Path;

use hitsave_host::kit::files::write_private;
use hitsave_host::kit::random::random_hex;
use hitsave_host::site::nginx::{Upstreams, render};

/// The names the local stack answers to.
pub const HOSTS: &[&str] = &[
    "hitsave-local.io",
    "www.hitsave-local.io",
    "api.hitsave-local.io",
];

/// Makes `<root>/.secrets/` (git-ignored, 0700) and any secret missing from it (0600).
/// Existing secrets are kept: the database volume was initialised with the password.
pub fn ensure_secrets(root: &Utf8Path) -> anyhow::Result<Vec<&'static str>> {
    use std::os::unix::fs::PermissionsExt;
    let dir = root.join(".secrets");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {dir}"))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let mut made = Vec::new();
    for name in hitsave_host::site::secret_files::NAMES {
        let path = dir.join(name);
        if !path.exists() {
            write_private(&path, &random_hex(24)?)?;
            made.push(*name);
        }
    }
    // Compose mounts a rotation's previous values too: empty files.
    hitsave_host::site::secret_files::ensure_previous_files(&dir)?;
    Ok(made)
}

/// The /etc/hosts lines missing from `hosts` (its text) for the local names on 127.0.0.1.
pub fn missing_host_lines(hosts: &str) -> Vec<String> {
    HOSTS
        .iter()
        .filter(|name| {
            !hosts.lines().any(|line| {
                let line = line.split('#').next().unwrap_or("");
                let mut words = line.split_whitespace();
                words.next() == Some("127.0.0.1") && words.any(|w| w == **name)
            })
        })
        .map(|name| format!("127.0.0.1 {name}"))
        .collect()
}

/// The nginx site for dev: nginx shares the host's network, listens on 127.0.0.1:`port` only
/// and proxies to the API and the web dev server on loopback (no Docker DNS involved).
pub fn dev_site(template: &str, port: u16, api_port: u16, web_port: u16) -> String {
    let upstreams = Upstreams {
        api: format!("127.0.0.1:{api_port}"),
        web: format!("127.0.0.1:{web_port}"),
        api_at: None,
        web_at: None,
        api_release: "dev".into(),
        web_release: "dev".into(),
    };
    render(template, "hitsave-local.io", None, &upstreams)
        .replace(
            "listen 80 default_server;",
            &format!("listen 127.0.0.1:{port} default_server;"),
        )
        .replace("listen 80;", &format!("listen 127.0.0.1:{port};"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lines() {
        let all = missing_host_lines("127.0.0.1 localhost\n");
        assert_eq!(all.len(), 3);
        assert_eq!(all[2], "127.0.0.1 api.hitsave-local.io");
        let some = missing_host_lines(
            "127.0.0.1 localhost hitsave-local.io\n# 127.0.0.1 www.hitsave-local.io\n10.0.0.1 api.hitsave-local.io\n",
        );
        assert_eq!(
            some,
            [
                "127.0.0.1 www.hitsave-local.io",
                "127.0.0.1 api.hitsave-local.io"
            ]
        );
        let none = missing_host_lines(
            "127.0.0.1 hitsave-local.io www.hitsave-local.io api.hitsave-local.io\n",
        );
        assert!(none.is_empty());
    }

    #[test]
    fn secrets_are_made_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        assert_eq!(ensure_secrets(root).unwrap().len(), 3);
        let first = std::fs::read_to_string(root.join(".secrets/jwt_secret")).unwrap();
        assert!(ensure_secrets(root).unwrap().is_empty());
        assert_eq!(
            std::fs::read_to_string(root.join(".secrets/jwt_secret")).unwrap(),
            first
        );
        let mode = std::fs::metadata(root.join(".secrets/jwt_secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn the_dev_site_stays_on_loopback() {
        let template = std::fs::read_to_string(format!(
            "{}/../deploy/nginx/hitsave.conf.template",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let site = dev_site(&template, 8000, 8080, 5173);
        assert!(!site.contains("listen 80"), "{site}");
        assert!(site.contains("listen 127.0.0.1:8000"));
        assert!(site.contains("upstream hitsave_api {\n    server 127.0.0.1:8080;\n    keepalive"));
        assert!(site.contains("upstream hitsave_web {\n    server 127.0.0.1:5173;\n    keepalive"));
        // No name to look up: nothing goes through a resolver.
        assert!(!site.contains("set $api") && !site.contains("set $web"));
        assert!(!site.contains("{{"), "a placeholder is left: {site}");
    }
}
