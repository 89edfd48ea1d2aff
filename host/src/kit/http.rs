//! HTTP requests to the stack on this host: health checks through nginx on 127.0.0.1 (with a
//! `Host` header) and the warm-up of a new container on its own address. HTTP/1.1 through
//! hyper, which the S3 SDK already brings (no crate of its own), on a small runtime per call:
//! the callers are synchronous.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// How long to wait for the connection, then for the whole answer.
const CONNECT: Duration = Duration::from_secs(3);
const ANSWER: Duration = Duration::from_secs(10);

/// The status and body of `GET path` on 127.0.0.1:port with `Host: host`; None while nothing
/// answers.
pub fn get(port: u16, host: &str, path: &str) -> Option<(u16, String)> {
    request(port, host, "GET", path, None)
}

/// One request with an optional JSON body; None while nothing answers.
pub fn request(
    port: u16,
    host: &str,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> Option<(u16, String)> {
    request_to(
        SocketAddr::from(([127, 0, 0, 1], port)),
        host,
        method,
        path,
        json,
    )
}

/// One request to `addr`; None while nothing answers (no connection, no whole answer in time).
/// It says `X-Forwarded-Proto: https`, as a TLS-terminating balancer does: a site that serves
/// only HTTPS serves these checks (from a private address) on its plain port too, the way it
/// serves its balancer. It says `X-HitSave-Check: 1` too: the host's own checks are not
/// traffic (the watch after a cutover leaves them out).
pub fn request_to(
    addr: SocketAddr,
    host: &str,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> Option<(u16, String)> {
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, host)
        .header("x-forwarded-proto", "https")
        .header("x-hitsave-check", "1");
    let body = match json {
        Some(json) => {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
            Full::new(Bytes::from(json.to_owned()))
        }
        None => Full::new(Bytes::new()),
    };
    let request = request.body(body).ok()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    runtime.block_on(async move {
        let stream = tokio::time::timeout(CONNECT, tokio::net::TcpStream::connect(addr))
            .await
            .ok()?
            .ok()?;
        let (status, body) = tokio::time::timeout(ANSWER, exchange(stream, request))
            .await
            .ok()?
            .ok()?;
        Some((status, String::from_utf8_lossy(&body).into_owned()))
    })
}

/// One HTTP/1.1 exchange on `stream`, in a runtime: the status and the whole body (one that
/// ends when the server closes the connection too, as Docker's attached exec does).
pub async fn exchange<S>(
    stream: S,
    request: hyper::Request<Full<Bytes>>,
) -> anyhow::Result<(u16, Bytes)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}
