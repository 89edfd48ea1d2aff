//! POSTs a JSON document to a URL (HTTPS with the system's roots, or HTTP), retrying with
//! backoff until it is taken (2xx) or a time bound passes: whatever the receiver does (hangs,
//! answers 500, is not there), the caller waits no longer than the bound. hyper with rustls,
//! which the S3 SDK already brings.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

/// Sends `json` to `url`; Ok(attempts) once a 2xx came back, Err(why) when the bound passed or
/// the URL is not one.
pub fn post_json(url: &str, json: &str, bound: Duration) -> Result<u32, String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("https" | "http")) {
        return Err(format!("{url:?} is not an http(s) URL"));
    }
    let deadline = Instant::now() + bound;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("no system roots: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build::<_, Full<Bytes>>(connector);
        let mut attempts = 0;
        let mut pause = Duration::from_millis(250);
        loop {
            attempts += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            let request = hyper::Request::post(uri.clone())
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(json.to_owned())))
                .map_err(|e| e.to_string())?;
            let why = match tokio::time::timeout(left, client.request(request)).await {
                Ok(Ok(response)) if response.status().is_success() => {
                    let rest = deadline.saturating_duration_since(Instant::now());
                    let _ = tokio::time::timeout(rest, response.into_body().collect()).await;
                    return Ok(attempts);
                }
                Ok(Ok(response)) => format!("answered {}", response.status().as_u16()),
                Ok(Err(e)) => format!("{e}"),
                Err(_) => "no answer in time".to_owned(),
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left <= pause {
                return Err(format!(
                    "not taken after {attempts} attempt(s) in {:.1} s: {why}",
                    bound.as_secs_f64()
                ));
            }
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    })
}
