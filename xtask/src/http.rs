//! A minimal HTTP/1.0 client, enough for health checks through nginx on 127.0.0.1 (with a
//! `Host` header) and for warming up a new container on its own address, without a client
//! library.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

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
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    request_to(addr, host, method, path, json)
}

/// One request to `addr`; None while nothing answers.
pub fn request_to(
    addr: std::net::SocketAddr,
    host: &str,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {host}\r\n");
    if let Some(body) = json {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        req.push_str("\r\n");
    }
    stream.write_all(req.as_bytes()).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response);
    let status = text.get(9..12)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}
