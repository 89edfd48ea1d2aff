//! Renders deploy/nginx/hitsave.conf.template for a domain into the host's nginx/ directory,
//! which the nginx container mounts. Written by rename, so nginx never reads half a file.
//!
//! Maintenance mode lives in the same directory: while `maintenance.html` is there, every
//! host's `location /` answers 503 with `Retry-After` and that page (nginx tests for the file
//! on each request, so turning it on or off needs no reload and drops no connection).

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

/// The page maintenance serves, and the file whose presence turns it on; the API's hosts
/// answer JSON instead; who turned it on (`restore`, or `operator` for `xtask maintenance`).
const MAINTENANCE_PAGE: &str = include_str!("maintenance.html");
const MAINTENANCE_FILE: &str = "maintenance.html";
const MAINTENANCE_JSON: &str = "maintenance.json";
const MAINTENANCE_BY: &str = "maintenance.by";
/// What a restore's maintenance says.
pub const RESTORE_MESSAGE: &str = "HitSave is being restored from a backup. Nothing you saved before is lost; please try again in a minute.";
/// How long clients are told to wait (seconds): a restore's swap takes about this long.
pub const RETRY_AFTER: u32 = 30;

/// Inside each `location /`: the test, and where the 503 is answered.
const MAINTENANCE_CHECK: &str = "        if (-f /etc/nginx/conf.d/maintenance.html) {\n            \
     return 503;\n        }\n        error_page 503 @maintenance;";

/// HTTP-01 challenges (`xtask tls`, tls/acme.rs): answered from <root>/nginx/acme on every
/// host and port, before maintenance and before the apps.
const ACME_LOCATION: &str = "    location ^~ /.well-known/acme-challenge/ {\n        \
     root /etc/nginx/conf.d/acme;\n        default_type text/plain;\n    }";

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
        .replace("{{acme}}", ACME_LOCATION)
        .replace("{{maintenance}}", MAINTENANCE_CHECK)
        .replace(
            "{{maintenance_page_api}}",
            &maintenance_location(MAINTENANCE_JSON),
        )
        .replace(
            "{{maintenance_page}}",
            &maintenance_location(MAINTENANCE_FILE),
        )
        .replace("{{domain}}", domain)
        .replace("{{api_upstream}}", &upstreams.api)
        .replace("{{web_upstream}}", &upstreams.web)
}

/// The named location that answers a maintenance 503 with `page` (the status stays 503).
fn maintenance_location(page: &str) -> String {
    format!(
        "    location @maintenance {{\n        root /etc/nginx/conf.d;\n        \
         add_header Retry-After {RETRY_AFTER} always;\n        \
         add_header Cache-Control no-store always;\n        \
         try_files /{page} =503;\n    }}"
    )
}

/// Whether a site rendered into `dir` has maintenance mode (releases older than it do not).
pub fn supports_maintenance(dir: &Utf8Path) -> bool {
    std::fs::read_to_string(dir.join("default.conf"))
        .is_ok_and(|site| site.contains("location @maintenance"))
}

/// Puts every host of the site in `dir` into maintenance, at once: the JSON and who asked
/// first, then the page, whose rename is the switch.
pub fn maintenance_on(dir: &Utf8Path, message: &str, by: &str) -> anyhow::Result<()> {
    let json = serde_json::json!({
        "error": "hitsave-maintenance",
        "message": message,
        "retry_after": RETRY_AFTER,
    });
    let page = MAINTENANCE_PAGE.replace("{{message}}", &html_escape(message));
    for (name, text) in [
        (MAINTENANCE_JSON, format!("{json}\n")),
        (MAINTENANCE_BY, format!("{by}\n")),
        (MAINTENANCE_FILE, page),
    ] {
        let tmp = dir.join(format!(".{name}.new"));
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {tmp}"))?;
        std::fs::rename(&tmp, dir.join(name))
            .with_context(|| format!("cannot turn maintenance on in {dir}"))?;
    }
    Ok(())
}

/// Who turned maintenance on (`restore`, `operator`), when it is on.
pub fn maintenance_by(dir: &Utf8Path) -> Option<String> {
    in_maintenance(dir).then(|| {
        std::fs::read_to_string(dir.join(MAINTENANCE_BY))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "restore".into())
    })
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Ends maintenance (the page first: that is the switch); nothing to do when it is off.
pub fn maintenance_off(dir: &Utf8Path) -> anyhow::Result<()> {
    for name in [MAINTENANCE_FILE, MAINTENANCE_JSON, MAINTENANCE_BY] {
        match std::fs::remove_file(dir.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot turn maintenance off in {dir}"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether maintenance is on (a restore runs, or one was killed before it ended).
pub fn in_maintenance(dir: &Utf8Path) -> bool {
    dir.join(MAINTENANCE_FILE).exists()
}

/// While this file is in the site's directory, `/lb-health` answers 503: the host is leaving
/// the load balancer's target group (CodeDeploy's BlockTraffic) or has not joined it again.
const DRAINING_FILE: &str = "draining";

/// Whether a site rendered into `dir` has the load balancer's health path.
pub fn supports_lb_health(dir: &Utf8Path) -> bool {
    std::fs::read_to_string(dir.join("default.conf"))
        .is_ok_and(|site| site.contains("location = /lb-health"))
}

/// Fails the load balancer's health check from now on; `why` is kept in the file.
pub fn draining_on(dir: &Utf8Path, why: &str) -> anyhow::Result<()> {
    let tmp = dir.join(format!(".{DRAINING_FILE}.new"));
    std::fs::write(&tmp, format!("{why}\n")).with_context(|| format!("cannot write {tmp}"))?;
    std::fs::rename(&tmp, dir.join(DRAINING_FILE))
        .with_context(|| format!("cannot start draining in {dir}"))
}

/// The health check passes again (when the API is ready); nothing to do when not draining.
pub fn draining_off(dir: &Utf8Path) -> anyhow::Result<()> {
    match std::fs::remove_file(dir.join(DRAINING_FILE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot end draining in {dir}"))
        }
        _ => Ok(()),
    }
}

/// Why the host is draining, when it is.
pub fn draining(dir: &Utf8Path) -> Option<String> {
    std::fs::read_to_string(dir.join(DRAINING_FILE))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Renders the site again with or without its 443 listeners, keeping the upstreams it routes
/// to now (a blue/green swap may have named one container); true when it changed.
pub fn set_tls(
    release_dir: &Utf8Path,
    dir: &Utf8Path,
    domain: &str,
    tls: bool,
) -> anyhow::Result<bool> {
    let site = std::fs::read_to_string(dir.join("default.conf")).unwrap_or_default();
    let upstream = |var: &str| {
        site.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("set ${var} http://")))
            .map(|u| u.trim_end_matches(';').to_owned())
    };
    let mut upstreams = Upstreams::services();
    if let Some(api) = upstream("api") {
        upstreams.set(App::Api, api);
    }
    if let Some(web) = upstream("web") {
        upstreams.set(App::Web, web);
    }
    install(release_dir, dir, domain, tls, &upstreams)
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
        // Every host answers HTTP-01 challenges from the webroot.
        assert_eq!(
            site.matches("location ^~ /.well-known/acme-challenge/")
                .count(),
            3
        );
        // Every host's `location /` has the maintenance test, the health check has not.
        assert_eq!(site.matches("error_page 503 @maintenance;").count(), 3);
        assert_eq!(site.matches("location @maintenance {").count(), 3);
        // The API's host answers JSON, the site's hosts the page.
        assert_eq!(site.matches("try_files /maintenance.json =503;").count(), 1);
        assert_eq!(site.matches("try_files /maintenance.html =503;").count(), 2);
        assert!(site.contains("add_header Retry-After 30 always;"));
        let health = site.find("/nginx-health").unwrap();
        assert!(!site[health..health + 80].contains("maintenance"));
        // The balancer's health path: on the default server, draining before the API.
        let lb = &site[site.find("location = /lb-health").unwrap()..];
        let lb = &lb[..lb.find("\n    }").unwrap()];
        assert!(
            site.find("location = /lb-health").unwrap() < site.find("server_name api.").unwrap()
        );
        assert!(
            lb.find("conf.d/draining").unwrap() < lb.find("proxy_pass $lb_api/ready;").unwrap()
        );
        assert!(lb.contains("set $lb_api http://api:8080;") && !lb.contains("maintenance"));
        let local = super::render(template, "hitsave-local.io", false, &ups);
        assert!(!local.contains("443"));
        assert!(local.contains("server_name api.hitsave-local.io;"));
    }
}
