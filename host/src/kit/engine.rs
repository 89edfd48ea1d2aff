//! Docker Engine's API on its unix socket, for what an install asks most often (list, inspect,
//! start, update, signal, top): one request in this process instead of a `docker` CLI process each
//! time (some 20 ms of CPU apiece, waiting behind live traffic for a core on a busy host).
//! HTTP/1.1 through hyper (kit/http.rs's exchange), unversioned paths (the engine's own API
//! version), the socket of `DOCKER_HOST` when it names one, else Docker's default.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::Full;
use serde::Deserialize;

/// How long one request may take; an engine that needs longer is stuck.
const ANSWER: Duration = Duration::from_secs(30);

/// Where the engine listens: `DOCKER_HOST` when it is a `unix://` address, else Docker's
/// default socket.
fn socket() -> anyhow::Result<String> {
    match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() => match host.strip_prefix("unix://") {
            Some(path) => Ok(path.to_owned()),
            None => bail!(
                "DOCKER_HOST={host}: this program talks to Docker Engine on a unix socket only; unset DOCKER_HOST or point it at one (unix:///var/run/docker.sock)"
            ),
        },
        _ => Ok("/var/run/docker.sock".to_owned()),
    }
}

/// One request to the engine: the status and the body.
fn call(method: &str, path: &str, json: Option<serde_json::Value>) -> anyhow::Result<(u16, Bytes)> {
    let socket = socket()?;
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, "docker");
    let body = match json {
        Some(json) => {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
            Full::new(Bytes::from(json.to_string()))
        }
        None => Full::new(Bytes::new()),
    };
    let request = request.body(body)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime
        .block_on(async {
            let stream = tokio::net::UnixStream::connect(&socket).await.with_context(|| {
                format!("Docker Engine does not answer on {socket}: start it (`systemctl start docker`)")
            })?;
            tokio::time::timeout(ANSWER, super::http::exchange(stream, request))
                .await
                .with_context(|| format!("Docker Engine did not answer {method} {path} within {ANSWER:?}"))?
        })
        .with_context(|| format!("Docker Engine: {method} {path}"))
}

/// `call`, with any status but `ok` an error carrying the engine's message.
fn expect(
    method: &str,
    path: &str,
    json: Option<serde_json::Value>,
    ok: &[u16],
) -> anyhow::Result<Bytes> {
    let (status, body) = call(method, path, json)?;
    if !ok.contains(&status) {
        bail!(refused(method, path, status, &body));
    }
    Ok(body)
}

/// `GET path`'s body, or None when the engine has no such object (404).
fn found(path: &str) -> anyhow::Result<Option<Bytes>> {
    let (status, body) = call("GET", path, None)?;
    match status {
        200 => Ok(Some(body)),
        404 => Ok(None),
        _ => bail!(refused("GET", path, status, &body)),
    }
}

/// What to say of an answer that is not the one asked for.
fn refused(method: &str, path: &str, status: u16, body: &[u8]) -> String {
    format!(
        "Docker Engine refused {method} {path} ({status}): {}",
        message(body)
    )
}

/// The engine's error message (`{"message": ...}`), else the body as text.
fn message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Error {
        message: String,
    }
    serde_json::from_slice::<Error>(body)
        .map(|e| e.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).trim().to_owned())
}

/// A name or id as one path segment.
fn segment(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The engine's version and the machine it runs on.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Version {
    /// "20.10.24+dfsg1".
    pub version: String,
    /// Go's name of the architecture: "amd64", "arm64".
    pub arch: String,
}

impl Version {
    /// The architecture as a target triple starts (x86_64, aarch64), as `uname -m` says it.
    pub fn machine(&self) -> &str {
        match self.arch.as_str() {
            "amd64" => "x86_64",
            "arm64" => "aarch64",
            "386" => "i686",
            "ppc64le" => "powerpc64le",
            other => other,
        }
    }
}

/// `GET /version`: whether the engine answers, its version and architecture (`docker info`
/// would ask runc and docker-init for theirs too).
pub fn version() -> anyhow::Result<Version> {
    Ok(serde_json::from_slice(&expect(
        "GET",
        "/version",
        None,
        &[200],
    )?)?)
}

/// One container as `GET /containers/json` lists it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Listed {
    pub id: String,
    /// Each with a leading "/".
    pub names: Vec<String>,
    pub image: String,
    /// "running", "exited", ...
    pub state: String,
    /// "Up 3 seconds (healthy)".
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Listed {
    /// Its name, without the leading "/".
    pub fn name(&self) -> &str {
        self.names
            .first()
            .map_or("", |n| n.strip_prefix('/').unwrap_or(n))
    }
}

/// Every container (running or not) that carries all of `labels` ("key=value").
pub fn containers(labels: &[&str]) -> anyhow::Result<Vec<Listed>> {
    let filters = serde_json::json!({ "label": labels }).to_string();
    let path = format!("/containers/json?all=1&filters={}", segment(&filters));
    Ok(serde_json::from_slice(&expect(
        "GET",
        &path,
        None,
        &[200],
    )?)?)
}

/// What `GET /containers/{id}/json` says of a container, the parts used here.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Inspected {
    pub state: ContainerState,
    pub network_settings: NetworkSettings,
    pub config: ContainerConfig,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// "KEY=value": what its processes (and `docker exec`'s) start with.
    #[serde(default)]
    pub env: Vec<String>,
}

impl Inspected {
    /// The value of `key` in its environment.
    pub fn env(&self, key: &str) -> Option<&str> {
        self.config
            .env
            .iter()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerState {
    /// "created", "running", "exited", ...
    pub status: String,
    /// Its main process on this host; 0 when it does not run.
    pub pid: i64,
    pub health: Option<HealthState>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthState {
    /// "starting", "healthy", "unhealthy".
    pub status: String,
    #[serde(default)]
    pub log: Vec<Probe>,
}

/// One health check's result.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Probe {
    pub output: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSettings {
    #[serde(default)]
    pub networks: BTreeMap<String, Endpoint>,
}

#[derive(Debug, Deserialize)]
pub struct Endpoint {
    #[serde(rename = "IPAddress", default)]
    pub ip_address: String,
}

/// The container `name` (or id); None when there is none.
pub fn container(name: &str) -> anyhow::Result<Option<Inspected>> {
    found(&format!("/containers/{}/json", segment(name)))?
        .map(|body| Ok(serde_json::from_slice(&body)?))
        .transpose()
}

/// The id of the image `name`; None when the engine has no such image.
pub fn image_id(name: &str) -> anyhow::Result<Option<String>> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Image {
        id: String,
    }
    found(&format!("/images/{}/json", segment(name)))?
        .map(|body| Ok(serde_json::from_slice::<Image>(&body)?.id))
        .transpose()
}

/// The `repository:tag` names of the images whose reference matches `pattern` ("hitsave/*").
pub fn image_names(pattern: &str) -> anyhow::Result<Vec<String>> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Image {
        #[serde(default)]
        repo_tags: Option<Vec<String>>,
    }
    let filters = serde_json::json!({ "reference": [pattern] }).to_string();
    let path = format!("/images/json?filters={}", segment(&filters));
    let images: Vec<Image> = serde_json::from_slice(&expect("GET", &path, None, &[200])?)?;
    Ok(images
        .into_iter()
        .flat_map(|i| i.repo_tags.unwrap_or_default())
        .filter(|t| t != "<none>:<none>")
        .collect())
}

/// Removes the image `name` (`docker image rm`: one a container uses is refused).
pub fn remove_image(name: &str) -> anyhow::Result<()> {
    expect(
        "DELETE",
        &format!("/images/{}", segment(name)),
        None,
        &[200],
    )?;
    Ok(())
}

/// Starts a created or stopped container (one that runs already is left as it is).
pub fn start(name: &str) -> anyhow::Result<()> {
    let path = format!("/containers/{}/start", segment(name));
    expect("POST", &path, None, &[204, 304])?;
    Ok(())
}

/// Sends `signal` (a name: `HUP`) to the running container's main process (`docker kill
/// --signal`).
pub fn signal(name: &str, signal: &str) -> anyhow::Result<()> {
    let path = format!(
        "/containers/{}/kill?signal={}",
        segment(name),
        segment(signal)
    );
    expect("POST", &path, None, &[204])?;
    Ok(())
}

/// Changes a running container's resources (`docker update`): `resources` as the API names
/// them (`CpuShares`, `CpuPeriod`, `CpuQuota`, ...).
pub fn update(name: &str, resources: serde_json::Value) -> anyhow::Result<()> {
    let path = format!("/containers/{}/update", segment(name));
    expect("POST", &path, Some(resources), &[200])?;
    Ok(())
}

/// The processes of the running container `name` (the engine runs `ps` on the host for it):
/// each one's pid and command line, which is a process's title for those that set one (nginx's
/// workers say whether they are shutting down).
pub fn processes(name: &str) -> anyhow::Result<Vec<(u32, String)>> {
    let body = expect(
        "GET",
        &format!("/containers/{}/top", segment(name)),
        None,
        &[200],
    )?;
    parse_top(&body)
}

fn parse_top(body: &[u8]) -> anyhow::Result<Vec<(u32, String)>> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Top {
        titles: Vec<String>,
        processes: Vec<Vec<String>>,
    }
    let top: Top = serde_json::from_slice(body)?;
    let column = |title: &str| {
        top.titles.iter().position(|t| t == title).with_context(|| {
            format!(
                "the engine's process list has no {title} column: {:?}",
                top.titles
            )
        })
    };
    let (pid, cmd) = (column("PID")?, column("CMD")?);
    top.processes
        .iter()
        .map(|p| {
            let field = |i: usize| p.get(i).map(String::as_str).unwrap_or_default();
            let n = field(pid).parse().with_context(|| {
                format!("the engine's process list has a pid of {:?}", field(pid))
            })?;
            Ok((n, field(cmd).to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_list_gives_pids_and_titles() {
        // As Docker 20.10 answered for an nginx container, a moment after `nginx -s reload`.
        let body = br#"{"Processes":[["root","29194","29171","1","09:24","?","00:00:00","nginx: master process nginx -g daemon off;"],["www-data","29223","29194","0","09:24","?","00:00:00","nginx: worker process is shutting down"],["www-data","29301","29194","0","09:24","?","00:00:00","nginx: worker process"]],"Titles":["UID","PID","PPID","C","STIME","TTY","TIME","CMD"]}"#;
        assert_eq!(
            parse_top(body).unwrap(),
            [
                (
                    29194,
                    "nginx: master process nginx -g daemon off;".to_owned()
                ),
                (29223, "nginx: worker process is shutting down".to_owned()),
                (29301, "nginx: worker process".to_owned()),
            ]
        );
        let no_pid = br#"{"Processes":[["x"]],"Titles":["CMD"]}"#;
        assert!(format!("{:#}", parse_top(no_pid).unwrap_err()).contains("no PID column"));
    }

    #[test]
    fn go_architectures_read_as_machines() {
        let v = |arch: &str| Version {
            version: "20.10".into(),
            arch: arch.into(),
        };
        assert_eq!(v("amd64").machine(), "x86_64");
        assert_eq!(v("arm64").machine(), "aarch64");
        assert_eq!(v("s390x").machine(), "s390x");
    }
}
