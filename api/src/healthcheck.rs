//! `hitsave healthcheck`: the container's health check. Runtime images have no curl, so the
//! binary asks itself: GET /ready on 127.0.0.1:$PORT, exit 0 only on 200.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

pub fn run() -> ExitCode {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    match probe(&port) {
        Ok(200) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("hitsave healthcheck: /ready answered {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("hitsave healthcheck: 127.0.0.1:{port}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn probe(port: &str) -> std::io::Result<u16> {
    let addr = format!("127.0.0.1:{port}");
    let addr = addr
        .parse()
        .map_err(|_| std::io::Error::other(format!("PORT={port} is not a port")))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    stream.set_read_timeout(Some(Duration::from_secs(4)))?;
    stream.write_all(b"GET /ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP response"))
}
