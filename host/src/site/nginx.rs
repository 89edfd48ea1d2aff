//! Renders deploy/nginx/hitsave.conf.template for a domain into the host's nginx/ directory,
//! which the nginx container mounts. Written by rename, so nginx never reads half a file.
//!
//! Maintenance mode lives in the same directory: while `maintenance.html` is there, every
//! host's `location /` answers 503 with `Retry-After` and that page (nginx tests for the file
//! on each request, so turning it on or off needs no reload and drops no connection).

use anyhow::Context;
use std::net::SocketAddr;

use camino::Utf8Path;

use crate::site::app::App;

/// Where nginx sends each app. By name, `host:port`: a compose service (`api:8080`) or, during
/// and after a blue/green swap, one container's name (`hitsave-api-2:8080`), looked up through
/// Docker's DNS; and, when the swap knows it, that container's address, which nginx connects to
/// first without a lookup (see `upstream_blocks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstreams {
    pub api: String,
    pub web: String,
    /// Each app's container address, tried before its name.
    pub api_at: Option<SocketAddr>,
    pub web_at: Option<SocketAddr>,
    /// The release each app serves, for the access log (the watch after a cutover reads it).
    pub api_release: String,
    pub web_release: String,
}

impl Upstreams {
    /// Each app by its compose service name (`api:8080`).
    pub fn services() -> Upstreams {
        let at = |app: App| format!("{}:{}", app.service(), app.port());
        Upstreams {
            api: at(App::Api),
            web: at(App::Web),
            api_at: None,
            web_at: None,
            api_release: String::new(),
            web_release: String::new(),
        }
    }

    /// Routes `app` to `upstream` (`host:port`), at `address` when it is known.
    pub fn set(&mut self, app: App, upstream: String, address: Option<SocketAddr>) {
        match app {
            App::Api => (self.api, self.api_at) = (upstream, address),
            App::Web => (self.web, self.web_at) = (upstream, address),
        }
    }

    /// Where `app` goes: `host:port`.
    pub fn get(&self, app: App) -> &str {
        match app {
            App::Api => &self.api,
            App::Web => &self.web,
        }
    }

    /// The address `app` is tried at first, if known.
    pub fn address(&self, app: App) -> Option<SocketAddr> {
        match app {
            App::Api => self.api_at,
            App::Web => self.web_at,
        }
    }
}

/// Where, inside the nginx container, each app's route by name listens (the fallback of its
/// upstream group).
pub fn by_name_listener(app: App) -> &'static str {
    match app {
        App::Api => "127.0.0.1:18080",
        App::Web => "127.0.0.1:13000",
    }
}

/// One upstream group per app, `hitsave_<service>`, which the site's locations proxy to: the
/// container's address first, with no lookup on the request path (Docker's DNS is answered by
/// dockerd, which answers late while it sets up a container's network: nginx held every
/// request of an app 100-170 ms when its 5 s cache of a name ran out during a swap's start);
/// and, when that address does not answer (a container restarted by its policy or a reboot can
/// come back on another), a server on loopback that proxies to the name, looked up again at
/// most 5 s later. A failed address is left alone for 30 s, so a stale one costs one connect
/// attempt (refused, or 250 ms when no one holds the address) per worker per 30 s.
/// A name that is an address (dev: `127.0.0.1:8080`) is the only server.
fn upstream_blocks(upstreams: &Upstreams) -> String {
    let mut out = String::new();
    for app in App::ALL {
        let (service, name) = (app.service(), upstreams.get(app));
        let literal = name.parse::<SocketAddr>().ok();
        let fallback = by_name_listener(app);
        let servers = match (upstreams.address(app), literal) {
            (_, Some(address)) => format!("    server {address};"),
            (Some(address), None) => format!(
                "    server {address} max_fails=1 fail_timeout=30s;\n    server {fallback} backup;"
            ),
            // No address known: the location asks for the name itself (`proxy_pass_to`).
            (None, None) => continue,
        };
        out.push_str(&format!(
            "upstream hitsave_{service} {{\n{servers}\n{KEEPALIVE}\n}}\n"
        ));
        if literal.is_none() {
            out.push_str(&format!(
                "server {{\n    listen {fallback};\n    access_log off;\n    location / {{\n        \
                 set ${service} http://{name};\n        proxy_pass ${service};\n{FORWARDED}\n    }}\n}}\n"
            ));
        }
    }
    out
}

/// Connections to an app kept open between requests, per worker: a page no longer pays for a
/// new connection on the app's side (Node.js accepts and sets up each one on its one thread).
/// Idle ones close after 4 s, before Node.js's own 5 s (`keepAliveTimeout`), so nginx never
/// sends a request on a connection the app is closing.
const KEEPALIVE: &str = "    keepalive 16;\n    keepalive_timeout 4s;";

/// How a location of the site reaches `app` (at `path`): through its upstream group when the
/// group has a known address or a literal one, else by its name through the resolver, as before
/// there were groups (no loopback hop when there is nothing to fall back from).
fn proxy_pass_to(upstreams: &Upstreams, app: App, var: &str, path: &str) -> String {
    let (service, name) = (app.service(), upstreams.get(app));
    if upstreams.address(app).is_some() || name.parse::<SocketAddr>().is_ok() {
        format!("        proxy_pass http://hitsave_{service}{path};")
    } else {
        format!("        set ${var} http://{name};\n        proxy_pass ${var}{path};")
    }
}

/// The headers the route by name passes on as the site's server set them (`proxy_set_header`
/// in a location replaces every inherited one).
const FORWARDED: &str = "        proxy_set_header Host $host;\n        \
     proxy_set_header X-Real-IP $http_x_real_ip;\n        \
     proxy_set_header X-Forwarded-For $http_x_forwarded_for;\n        \
     proxy_set_header X-Forwarded-Proto $http_x_forwarded_proto;\n        \
     proxy_set_header Upgrade $http_upgrade;\n        \
     proxy_set_header Connection $connection_upgrade;";

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

/// HTTPS for a site that has a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Https {
    /// Strict-Transport-Security's max-age, in seconds.
    pub hsts_max_age: u64,
}

impl Https {
    /// A year for production, a day elsewhere (staging's certificate comes from a CA browsers
    /// do not trust, and a long pin would outlive a mistake), unless the host says otherwise.
    pub fn for_env(env: &str, hsts_max_age: Option<u64>) -> Https {
        Https {
            hsts_max_age: hsts_max_age.unwrap_or(if env == "production" {
                365 * 86_400
            } else {
                86_400
            }),
        }
    }
}

/// TLS 1.2 and 1.3 only, Mozilla's "intermediate" ECDHE suites (no DHE: it would need a
/// dhparam file) and curves, the server not imposing its order, no session tickets (their key
/// would outlive forward secrecy); HSTS only on what was served over HTTPS.
const TLS_SETTINGS: &str = "ssl_certificate /etc/nginx/tls/fullchain.pem;\n\
ssl_certificate_key /etc/nginx/tls/privkey.pem;\n\
ssl_protocols TLSv1.2 TLSv1.3;\n\
ssl_ecdh_curve X25519:prime256v1:secp384r1;\n\
ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;\n\
ssl_prefer_server_ciphers off;\n\
ssl_session_tickets off;\n\
ssl_session_cache shared:hitsave:10m;\n\
ssl_session_timeout 1d;";

/// Inside each site host's `location /`: a plain-HTTP request goes to https://.
const TO_HTTPS: &str = "        if ($hitsave_proto = http) {\n            \
     return 301 https://$host$request_uri;\n        }";

/// The headers every response of an HTTPS site carries (repeated where a location adds its
/// own, since nginx then drops the server's).
const SECURITY_HEADERS: &str = "    add_header Strict-Transport-Security $hitsave_hsts always;\n    \
     add_header X-Content-Type-Options nosniff always;\n    \
     add_header Referrer-Policy strict-origin-when-cross-origin always;\n    \
     add_header Content-Security-Policy \"frame-ancestors 'none'\" always;";

/// What `/lb-health` answers while the API is ready.
const LB_READY_FILE: &str = "lb-ready.txt";

/// Renders the site; `https` adds 443 listeners with the host's certificate files, sends
/// plain-HTTP requests to https:// (but ACME's challenges) and adds the security headers.
pub fn render(template: &str, domain: &str, https: Option<Https>, upstreams: &Upstreams) -> String {
    let (settings, listen, default, to_https, headers) = match https {
        Some(h) => (
            format!(
                "{TLS_SETTINGS}\nmap $hitsave_proto $hitsave_hsts {{\n    https \"max-age={}\";\n    default \"\";\n}}",
                h.hsts_max_age
            ),
            "    listen 443 ssl;",
            "    listen 443 ssl default_server;",
            TO_HTTPS,
            SECURITY_HEADERS,
        ),
        None => (String::new(), "", "", "", ""),
    };
    template
        .replace("{{tls_settings}}", &settings)
        .replace("{{tls_listen}}", listen)
        .replace("{{tls_default}}", default)
        .replace("{{to_https}}", to_https)
        .replace("{{security_headers}}", headers)
        .replace("{{acme}}", ACME_LOCATION)
        .replace("{{maintenance}}", MAINTENANCE_CHECK)
        .replace(
            "{{maintenance_page_api}}",
            &maintenance_location(MAINTENANCE_JSON, headers),
        )
        .replace(
            "{{maintenance_page}}",
            &maintenance_location(MAINTENANCE_FILE, headers),
        )
        .replace("{{upstreams}}", upstream_blocks(upstreams).trim_end())
        .replace(
            "{{lb_api_pass}}",
            &proxy_pass_to(upstreams, App::Api, "lb_api", "/ready"),
        )
        .replace(
            "{{api_pass}}",
            &proxy_pass_to(upstreams, App::Api, "api", ""),
        )
        .replace(
            "{{web_pass}}",
            &proxy_pass_to(upstreams, App::Web, "web", ""),
        )
        .replace("{{domain}}", domain)
        // Templates of releases from before the upstream groups name the apps here.
        .replace("{{api_upstream}}", &upstreams.api)
        .replace("{{web_upstream}}", &upstreams.web)
        .replace("{{api_release}}", &upstreams.api_release)
        .replace("{{web_release}}", &upstreams.web_release)
}

/// The named location that answers a maintenance 503 with `page` (the status stays 503).
fn maintenance_location(page: &str, headers: &str) -> String {
    let headers: String = headers.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "    location @maintenance {{\n        root /etc/nginx/conf.d;\n        \
         add_header Retry-After {RETRY_AFTER} always;\n        \
         add_header Cache-Control no-store always;\n{headers}        \
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

/// The HTTPS settings for the release in `release_dir`: HITSAVE_HSTS_MAX_AGE in its
/// release.env, else its environment's default.
fn https_of(release_dir: &Utf8Path) -> Https {
    let env = crate::site::stack::ReleaseEnv::read(&release_dir.join("release.env")).ok();
    Https::for_env(
        env.as_ref().map_or("production", |e| e.env_name()),
        env.as_ref().and_then(|e| e.hsts_max_age()),
    )
}

/// Renders the site again with or without its 443 listeners, keeping the upstreams it routes
/// to now (a blue/green swap may have named one container); true when it changed.
pub fn set_tls(
    release_dir: &Utf8Path,
    dir: &Utf8Path,
    domain: &str,
    tls: bool,
) -> anyhow::Result<bool> {
    install(release_dir, dir, domain, tls, &routed(dir))
}

/// Where the site in `dir` sends each app now (the service names when it names none).
pub fn routed(dir: &Utf8Path) -> Upstreams {
    let site = std::fs::read_to_string(dir.join("default.conf")).unwrap_or_default();
    let mut upstreams = Upstreams::services();
    for app in App::ALL {
        let service = app.service();
        let name = site
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("set ${service} http://")))
            .map(|u| u.trim_end_matches(';').to_owned());
        // The first server of its group, when it is the container's address.
        let address = site
            .split(&format!("upstream hitsave_{service} {{\n"))
            .nth(1)
            .and_then(|group| group.lines().next())
            .and_then(|l| l.trim().strip_prefix("server "))
            .filter(|l| l.contains(" max_fails="))
            .and_then(|l| l.split_whitespace().next()?.parse().ok());
        if let Some(name) = name {
            upstreams.set(app, name, address);
        }
    }
    upstreams
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
    let https = tls.then(|| https_of(release_dir));
    let mut upstreams = upstreams.clone();
    if let Ok(env) = crate::site::stack::ReleaseEnv::read(&release_dir.join("release.env")) {
        for (app, release) in [
            (App::Api, &mut upstreams.api_release),
            (App::Web, &mut upstreams.web_release),
        ] {
            if let Ok((id, _)) = env.app_release(app) {
                *release = id.to_owned();
            }
        }
    }
    let site = render(&template, domain, https, &upstreams);
    // What `/lb-health` answers while the API is ready (and nothing else).
    let ready = dir.join(LB_READY_FILE);
    if std::fs::read_to_string(&ready).ok().as_deref() != Some("ready\n") {
        std::fs::write(&ready, "ready\n").with_context(|| format!("cannot write {ready}"))?;
    }
    let path = dir.join("default.conf");
    if std::fs::read_to_string(&path).ok().as_deref() == Some(site.as_str()) {
        return Ok(false);
    }
    let tmp = dir.join(".default.conf.new");
    std::fs::write(&tmp, &site).with_context(|| format!("cannot write {tmp}"))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {path}"))?;
    Ok(true)
}

/// Whether nginx should listen on 443: a TLS environment whose certificate files are there.
pub fn serves_https(stack: &crate::site::stack::Stack) -> anyhow::Result<bool> {
    Ok(
        stack.env.env()?.tls()
            && crate::site::tls_files::Files::new(stack.env.tls_dir()?).present(),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn routes_the_domain() {
        let template = include_str!("../../../deploy/nginx/hitsave.conf.template");
        let ups = super::Upstreams::services();
        let https = super::Https::for_env("production", None);
        assert_eq!(https.hsts_max_age, 31_536_000);
        assert_eq!(super::Https::for_env("staging", None).hsts_max_age, 86_400);
        assert_eq!(super::Https::for_env("staging", Some(60)).hsts_max_age, 60);
        let site = super::render(template, "hitsave.io", Some(https), &ups);
        assert!(site.contains("set $api http://api:8080;"));
        // No address known: no group, the name through the resolver as before.
        assert!(!site.contains("upstream hitsave_api") && site.contains("proxy_pass $api;"));
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
        assert!(lb.find("conf.d/draining").unwrap() < lb.find("auth_request /lb-ready;").unwrap());
        assert!(
            lb.contains("alias /etc/nginx/conf.d/lb-ready.txt;") && !lb.contains("maintenance")
        );
        assert!(lb.contains("auth_request /lb-ready;"));
        assert!(site.contains("set $lb_api http://api:8080;\n        proxy_pass $lb_api/ready;"));
        // HTTPS only: each site host's `location /` sends plain HTTP to https://, after the
        // challenges (their own location); the headers on every site host and maintenance page.
        assert_eq!(
            site.matches("return 301 https://$host$request_uri;")
                .count(),
            2
        );
        assert_eq!(
            site.matches("add_header Strict-Transport-Security $hitsave_hsts always;")
                .count(),
            2 + 3
        );
        assert!(site.contains("https \"max-age=31536000\";"));
        assert!(site.contains("ssl_protocols TLSv1.2 TLSv1.3;"));
        assert!(site.contains("ssl_session_tickets off;"));
        assert!(site.contains("server_tokens off;"));
        let local = super::render(template, "hitsave-local.io", None, &ups);
        assert!(!local.contains("443") && !local.contains("301") && !local.contains("ssl_"));
        assert!(!local.contains("Strict-Transport-Security"));
        assert!(local.contains("server_name api.hitsave-local.io;"));
        assert!(local.contains("server_tokens off;") && !local.contains("{{"));
    }

    #[test]
    fn an_app_is_reached_at_its_address_then_by_its_name() {
        use super::{App, Upstreams};
        let template = include_str!("../../../deploy/nginx/hitsave.conf.template");
        let mut ups = Upstreams::services();
        let at = "172.18.0.5:8080".parse().unwrap();
        ups.set(App::Api, "hitsave-api-2:8080".into(), Some(at));
        let site = super::render(template, "hitsave.io", None, &ups);
        // The container's address first; its name on loopback when that fails.
        assert!(site.contains(
            "upstream hitsave_api {\n    server 172.18.0.5:8080 max_fails=1 fail_timeout=30s;\n    server 127.0.0.1:18080 backup;\n    keepalive 16;"
        ));
        let by_name = &site[site.find("listen 127.0.0.1:18080;").unwrap()..];
        assert!(by_name.contains("set $api http://hitsave-api-2:8080;"));
        assert!(by_name.contains("proxy_set_header X-Real-IP $http_x_real_ip;"));
        // The web app has no known address: reached by its name through the resolver, as before.
        assert!(!site.contains("upstream hitsave_web") && site.contains("proxy_pass $web;"));
        assert!(site.contains("set $web http://web:3000;"));
        // Only an unreachable server sends a request on: an app's own 502 is its answer.
        assert!(site.contains("proxy_next_upstream error timeout;"));
        assert!(!site.contains("http_502"));
        // A name that is an address needs no lookup and no fallback (dev).
        ups.set(App::Web, "127.0.0.1:5173".into(), None);
        let dev = super::render(template, "hitsave.io", None, &ups);
        assert!(dev.contains("upstream hitsave_web {\n    server 127.0.0.1:5173;\n    keepalive"));
        assert!(!dev.contains("127.0.0.1:13000") && !dev.contains("set $web"));

        // What the site routes to is read back from it (a TLS change renders it again).
        let dir = tempfile::tempdir().unwrap();
        let dir = camino::Utf8Path::from_path(dir.path()).unwrap();
        std::fs::write(dir.join("default.conf"), &site).unwrap();
        let routed = super::routed(dir);
        assert_eq!(
            (routed.api.as_str(), routed.api_at),
            ("hitsave-api-2:8080", Some(at))
        );
        assert_eq!((routed.web.as_str(), routed.web_at), ("web:3000", None));
    }
}
