//! Renders deploy/nginx/hitsave.conf.template for a domain into the host's nginx/ directory,
//! which the nginx container mounts. Written by rename, so nginx never reads half a file.

use anyhow::Context;
use camino::Utf8Path;

use super::app::App;

/// Where nginx sends each app: `host:port`, a compose service name (`api:8080`) or, during
/// and after a blue/green swap, one container's name (`hitsave-api-2:8080`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstreams {
    pub api: String,
    pub web: String,
}

impl Upstreams {
    /// Each app by its compose service name (`api:8080`).
    pub fn services() -> Upstreams {
        let at = |app: App| format!("{}:{}", app.service(), app.port());
        Upstreams {
            api: at(App::Api),
            web: at(App::Web),
        }
    }

    pub fn set(&mut self, app: App, upstream: String) {
        match app {
            App::Api => self.api = upstream,
            App::Web => self.web = upstream,
        }
    }
}

/// Renders the site; `tls` adds 443 listeners with the host's certificate files.
pub fn render(template: &str, domain: &str, tls: bool, upstreams: &Upstreams) -> String {
    let (files, listen, default) = if tls {
        (
            "ssl_certificate /etc/nginx/tls/fullchain.pem;\nssl_certificate_key /etc/nginx/tls/privkey.pem;",
            "    listen 443 ssl;",
            "    listen 443 ssl default_server;",
        )
    } else {
        ("", "", "")
    };
    template
        .replace("{{tls_files}}", files)
        .replace("{{tls_listen}}", listen)
        .replace("{{tls_default}}", default)
        .replace("{{domain}}", domain)
        .replace("{{api_upstream}}", &upstreams.api)
        .replace("{{web_upstream}}", &upstreams.web)
}

/// Writes the rendered site into `dir`; true when it changed (nginx must reload).
pub fn install(
    release_dir: &Utf8Path,
    dir: &Utf8Path,
    domain: &str,
    tls: bool,
    upstreams: &Upstreams,
) -> anyhow::Result<bool> {
    let template_path = release_dir.join("deploy/nginx/hitsave.conf.template");
    let template = std::fs::read_to_string(&template_path)
        .with_context(|| format!("cannot read {template_path}"))?;
    let site = render(&template, domain, tls, upstreams);
    let path = dir.join("default.conf");
    if std::fs::read_to_string(&path).ok().as_deref() == Some(site.as_str()) {
        return Ok(false);
    }
    let tmp = dir.join(".default.conf.new");
    std::fs::write(&tmp, &site).with_context(|| format!("cannot write {tmp}"))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {path}"))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn routes_the_domain() {
        let template = include_str!("../../../deploy/nginx/hitsave.conf.template");
        let ups = super::Upstreams::services();
        let site = super::render(template, "hitsave.io", true, &ups);
        assert!(site.contains("set $api http://api:8080;"));
        assert!(site.contains("server_name api.hitsave.io;"));
        assert!(site.contains("server_name hitsave.io www.hitsave.io;"));
        // App::host names the hosts the site routes to each app.
        use super::App;
        assert_eq!(App::Api.host("hitsave.io"), "api.hitsave.io");
        assert_eq!(App::Web.host("hitsave.io"), "hitsave.io");
        assert!(site.contains("listen 443 ssl;"));
        assert!(!site.contains("{{"));
        let local = super::render(template, "hitsave-local.io", false, &ups);
        assert!(!local.contains("443"));
        assert!(local.contains("server_name api.hitsave-local.io;"));
    }
}
