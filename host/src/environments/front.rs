//! The front of a host that runs several environments (a preview host: staging and one
//! environment per pull request): one nginx on ports 80 and 443 in front of each
//! environment's own nginx, which listens on 127.0.0.1 only. Port 80 is routed by Host header,
//! so each environment answers its own ACME challenges and its own redirects to HTTPS; port
//! 443 is passed through by the TLS server name (ssl_preread), so each environment keeps its
//! certificate, its TLS settings and HSTS, and the front holds no key. The configuration is
//! written whole, checked by `nginx -t` and swapped in by rename; nginx takes it with a
//! graceful reload (old workers finish their requests), so an environment coming or going
//! never drops another's requests.
//!
//! The front runs as its own compose project (`<project>-front`, one nginx container on the
//! host's network) from `<root>/front/`: compose.yml and conf/nginx.conf, written here.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use camino::{Utf8Path, Utf8PathBuf};

use crate::kit::compose::Compose;
use crate::site::release_env::ReleaseEnv;
use crate::site::settings::HostSettings;

/// Where the front listens: the host's ports.
#[derive(Debug, Clone, Copy)]
pub struct Listen {
    pub bind: IpAddr,
    pub http_port: u16,
    pub https_port: u16,
}

impl Listen {
    /// The host's address and ports from its settings [default: 0.0.0.0, 80 and 443].
    pub fn of(settings: &HostSettings) -> Listen {
        Listen {
            bind: settings.bind.unwrap_or(IpAddr::from([0, 0, 0, 0])),
            http_port: settings.http_port.unwrap_or(80),
            https_port: settings.https_port.unwrap_or(443),
        }
    }
}

/// One environment behind the front.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The environment (`staging`, `preview-42`): for comments and messages.
    pub environment: String,
    /// The host names it serves (`pr-42.preview.hitsave.io`, `www.` and `api.` of it).
    pub names: Vec<String>,
    /// Its nginx's HTTP port on 127.0.0.1.
    pub http_port: u16,
    /// Its nginx's HTTPS port on 127.0.0.1.
    pub https_port: u16,
}

/// A route's names must be host names (they go into nginx's configuration as they are).
fn check(route: &Route) -> anyhow::Result<()> {
    anyhow::ensure!(
        !route.names.is_empty(),
        "environment {} serves no name",
        route.environment
    );
    for name in &route.names {
        anyhow::ensure!(
            !name.is_empty()
                && name.len() <= 253
                && name.split('.').all(|l| !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')),
            "environment {}: {name:?} is not a host name",
            route.environment
        );
    }
    Ok(())
}

/// The front's nginx.conf for `routes`; a name served by two environments is refused.
pub fn config(listen: Listen, routes: &[Route]) -> anyhow::Result<String> {
    let http = SocketAddr::new(listen.bind, listen.http_port);
    let https = SocketAddr::new(listen.bind, listen.https_port);
    // The health check answers which routes the front has: a reload is seen taking effect.
    let generation = generation(routes);
    let mut seen = std::collections::BTreeMap::new();
    for route in routes {
        check(route)?;
        for name in &route.names {
            if let Some(other) = seen.insert(name.clone(), route.environment.clone()) {
                anyhow::bail!(
                    "{name} is served by both {other} and {}: remove one of them first",
                    route.environment
                );
            }
        }
    }
    let mut conf = format!(
        "# Written by xtask: the front of this host's environments. Do not edit.\n\
         load_module modules/ngx_stream_module.so;\n\
         worker_processes auto;\n\
         error_log stderr warn;\n\
         events {{ worker_connections 4096; }}\n\n\
         http {{\n\
         \x20   server_tokens off;\n\
         \x20   access_log off;\n\
         \x20   # Only this host's own checks may say they came over HTTPS.\n\
         \x20   map $remote_addr $front_proto {{\n\
         \x20       127.0.0.1 $http_x_forwarded_proto;\n\
         \x20       default http;\n\
         \x20   }}\n\
         \x20   # Names no environment serves, and the front's own health check.\n\
         \x20   server {{\n\
         \x20       listen {http} default_server;\n\
         \x20       location = /front-health {{ return 200 \"{generation}\\n\"; }}\n\
         \x20       location / {{ return 404; }}\n\
         \x20   }}\n",
    );
    for route in routes {
        let _ = write!(
            conf,
            "    # {env}\n    server {{\n        listen {http};\n        server_name {names};\n        location / {{\n            proxy_pass http://127.0.0.1:{port};\n            proxy_set_header Host $host;\n            proxy_set_header X-Forwarded-For $remote_addr;\n            proxy_set_header X-Forwarded-Proto $front_proto;\n            proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n        }}\n    }}\n",
            env = route.environment,
            names = route.names.join(" "),
            port = route.http_port
        );
    }
    conf.push_str(
        "}\n\n\
         stream {\n\
         \x20   # By the name the client asks for; nothing answers for other names.\n\
         \x20   map $ssl_preread_server_name $environment {\n",
    );
    for route in routes {
        for name in &route.names {
            let _ = writeln!(conf, "        {name} 127.0.0.1:{};", route.https_port);
        }
    }
    let _ = write!(
        conf,
        "        default unix:/nonexistent;\n\
         \x20   }}\n\
         \x20   server {{\n\
         \x20       listen {https};\n\
         \x20       ssl_preread on;\n\
         \x20       proxy_pass $environment;\n\
         \x20   }}\n\
         }}\n",
    );
    Ok(conf)
}

/// A short digest of the routes, which `/front-health` answers once nginx has them.
fn generation(routes: &[Route]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{routes:?}").as_bytes());
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// `<root>/front`: the front's compose file and configuration.
pub fn dir(root: &Utf8Path) -> Utf8PathBuf {
    root.join("front")
}

/// The routes of every environment that has a release serving (`current`).
pub fn routes(root: &Utf8Path) -> anyhow::Result<Vec<Route>> {
    let mut routes = Vec::new();
    for name in crate::site::placement::list(root)? {
        let host = crate::site::host::Host {
            root: crate::site::placement::envs_dir(root).join(&name),
        };
        let Some(id) = host.current() else {
            continue;
        };
        let env = ReleaseEnv::read(&host.release_dir(&id).join("release.env"))?;
        let domain = env.domain()?;
        routes.push(Route {
            names: vec![
                domain.to_owned(),
                format!("www.{domain}"),
                format!("api.{domain}"),
            ],
            http_port: env.http_port()?,
            https_port: env.https_port()?,
            environment: name,
        });
    }
    Ok(routes)
}

/// The front's compose project, its file written from the host settings.
fn project(settings: &HostSettings) -> anyhow::Result<Compose> {
    let dir = dir(&settings.root);
    std::fs::create_dir_all(dir.join("conf")).with_context(|| format!("cannot create {dir}"))?;
    let image = crate::site::settings::base_images(settings.local_base_images)
        .into_iter()
        .find(|(key, _)| *key == "HITSAVE_NGINX_IMAGE")
        .map(|(_, image)| image)
        .context("no nginx image")?;
    let file = dir.join("compose.yml");
    let text = format!(
        "# Written by xtask: the front of this host's environments. Do not edit.\n\
         services:\n\
         \x20 nginx:\n\
         \x20   image: {image}\n\
         \x20   network_mode: host\n\
         \x20   restart: unless-stopped\n\
         \x20   command: [\"nginx\", \"-c\", \"{CONF}\", \"-g\", \"daemon off;\"]\n\
         \x20   volumes:\n\
         \x20     - ./conf:/etc/hitsave-front:ro\n\
         \x20   mem_limit: 64m\n\
         \x20   pids_limit: 64\n\
         \x20   stop_signal: SIGQUIT\n"
    );
    if std::fs::read_to_string(&file).ok().as_deref() != Some(&text) {
        crate::kit::files::replace_private(&file, text.as_bytes())?;
    }
    Ok(Compose {
        project: format!("{}-front", settings.project),
        directory: dir.clone(),
        files: vec![file],
        env_file: None,
        env: Vec::new(),
        isolated: true,
    })
}

/// Where the front's configuration is inside its container.
const CONF: &str = "/etc/hitsave-front/nginx.conf";

/// Routes every environment that serves, and only those: writes the configuration, checks it
/// with `nginx -t`, swaps it in and reloads the front gracefully (starting it the first
/// time), then waits until it answers with the new routes. A configuration nginx refuses is
/// not swapped in; the front keeps the routes it had.
pub fn update(settings: &HostSettings) -> anyhow::Result<()> {
    let root = &settings.root;
    let dir = dir(root);
    let compose = project(settings)?;
    let _lock = crate::site::lock::InstallLock::acquire(
        &dir.join(".lock"),
        std::time::Duration::from_secs(120),
        "updating the front",
    )?;
    let routes = routes(root)?;
    let listen = Listen::of(settings);
    let conf = config(listen, &routes)?;
    let running = !compose
        .run(
            "listing the front",
            &["ps", "--quiet", "--status", "running"],
        )?
        .trim()
        .is_empty();
    let path = dir.join("conf/nginx.conf");
    if running && std::fs::read_to_string(&path).ok().as_deref() == Some(&conf) {
        return Ok(());
    }
    swap_in(&compose, &dir, &conf, running)?;
    wait_for(listen, &generation(&routes))?;
    let names: Vec<&str> = routes.iter().map(|r| r.environment.as_str()).collect();
    eprintln!(
        "xtask: front: routes {} on {}:{} and :{} (reloaded gracefully)",
        if names.is_empty() {
            "nothing".to_owned()
        } else {
            names.join(", ")
        },
        listen.bind,
        listen.http_port,
        listen.https_port
    );
    Ok(())
}

/// `conf` checked by nginx, renamed over the front's configuration, and taken by a graceful
/// reload (or the front started).
fn swap_in(compose: &Compose, dir: &Utf8Path, conf: &str, running: bool) -> anyhow::Result<()> {
    let new = dir.join("conf/nginx.conf.new");
    std::fs::write(&new, conf).with_context(|| format!("cannot write {new}"))?;
    let test = [
        "nginx",
        "-t",
        "-q",
        "-c",
        "/etc/hitsave-front/nginx.conf.new",
    ];
    let how: &[&str] = if running {
        &["exec", "-T", "nginx"]
    } else {
        &["run", "--rm", "--no-deps", "-T", "nginx"]
    };
    let (status, said) =
        compose.output("checking the front's configuration", &[how, &test].concat())?;
    if !status.success() {
        let _ = std::fs::remove_file(&new);
        anyhow::bail!(
            "nginx refused the front's new configuration; the front keeps its routes:\n{}",
            crate::kit::compose::tail(&said, 10)
        );
    }
    let path = dir.join("conf/nginx.conf");
    std::fs::rename(&new, &path).with_context(|| format!("cannot replace {path}"))?;
    if running {
        compose.run(
            "reloading the front",
            &["exec", "-T", "nginx", "nginx", "-s", "reload", "-c", CONF],
        )?;
    } else {
        compose.run(
            "starting the front",
            &["up", "--detach", "--remove-orphans"],
        )?;
    }
    Ok(())
}

/// Until the front answers its health check with the routes' generation.
fn wait_for(listen: Listen, generation: &str) -> anyhow::Result<()> {
    let ip = if listen.bind.is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        listen.bind
    };
    let check = SocketAddr::new(ip, listen.http_port);
    crate::kit::process::wait_until(
        "the front to take its new routes",
        std::time::Duration::from_secs(30),
        || {
            Ok(matches!(
                crate::kit::http::request_to(check, "front.invalid", "GET", "/front-health", None),
                Some((200, body)) if body.trim() == generation
            ))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTEN: Listen = Listen {
        bind: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        http_port: 80,
        https_port: 443,
    };

    fn route(env: &str, domain: &str, port: u16) -> Route {
        Route {
            environment: env.into(),
            names: vec![
                domain.into(),
                format!("www.{domain}"),
                format!("api.{domain}"),
            ],
            http_port: port,
            https_port: port + 1,
        }
    }

    #[test]
    fn each_name_goes_to_its_environment_on_both_ports() {
        let conf = config(
            LISTEN,
            &[
                route("staging", "staging.hitsave.io", 20000),
                route("preview-42", "pr-42.preview.hitsave.io", 20002),
            ],
        )
        .unwrap();
        assert!(conf.contains(
            "server_name pr-42.preview.hitsave.io www.pr-42.preview.hitsave.io api.pr-42.preview.hitsave.io;\n        location / {\n            proxy_pass http://127.0.0.1:20002;"
        ));
        assert!(conf.contains("        api.staging.hitsave.io 127.0.0.1:20001;\n"));
        assert!(conf.contains("        www.pr-42.preview.hitsave.io 127.0.0.1:20003;\n"));
        assert!(conf.contains("listen 0.0.0.0:80 default_server;"));
        assert!(conf.contains("listen 0.0.0.0:443;\n        ssl_preread on;"));
        // An empty front still answers its health check and nothing else.
        let empty = config(LISTEN, &[]).unwrap();
        assert!(empty.contains("/front-health") && !empty.contains("proxy_pass http://"));
    }

    #[test]
    fn clashing_or_malformed_names_are_refused() {
        let err = config(
            LISTEN,
            &[
                route("preview-1", "pr-1.preview.hitsave.io", 20000),
                route("preview-2", "pr-1.preview.hitsave.io", 20002),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("served by both preview-1 and preview-2"),
            "{err}"
        );
        for bad in ["", "a b.io", "x;y.io", "-a.io", "a..io"] {
            let mut r = route("preview-3", "pr-3.preview.hitsave.io", 20004);
            r.names = vec![bad.into()];
            assert!(config(LISTEN, &[r]).is_err(), "{bad:?} was accepted");
        }
    }
}
