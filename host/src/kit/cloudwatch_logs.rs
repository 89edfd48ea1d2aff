//! Reads a CloudWatch Logs group: the events of every stream since a time, in order, with the
//! official SDK (the instance role's credentials; another endpoint when named).

use anyhow::Context;

/// One logged line: its stream, its time (ms since the epoch) and its text.
#[derive(Debug, Clone)]
pub struct Event {
    pub stream: String,
    pub timestamp: i64,
    pub message: String,
}

/// The client for `region` (and `endpoint`, when named).
async fn client(region: &str, endpoint: Option<&str>) -> aws_sdk_cloudwatchlogs::Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()));
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
    }
    aws_sdk_cloudwatchlogs::Client::new(&loader.load().await)
}

/// Makes `group` (the AWS setup's job; the tests make theirs here).
pub fn create_group(group: &str, region: &str, endpoint: Option<&str>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            client(region, endpoint)
                .await
                .create_log_group()
                .log_group_name(group)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot make log group {group}: {}",
                        aws_sdk_cloudwatchlogs::error::DisplayErrorContext(&e)
                    )
                })
        })
}

/// The events of `group` in `region` since `since_ms`, oldest first (at most `limit`).
pub fn events(
    group: &str,
    region: &str,
    endpoint: Option<&str>,
    since_ms: i64,
    limit: usize,
) -> anyhow::Result<Vec<Event>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = client(region, endpoint).await;
        let mut found = Vec::new();
        let mut token = None;
        loop {
            let page = client
                .filter_log_events()
                .log_group_name(group)
                .start_time(since_ms)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!("{}", aws_sdk_cloudwatchlogs::error::DisplayErrorContext(&e))
                })
                .with_context(|| format!("cannot read CloudWatch Logs group {group} ({region})"))?;
            for e in page.events() {
                found.push(Event {
                    stream: e.log_stream_name().unwrap_or_default().to_owned(),
                    timestamp: e.timestamp().unwrap_or_default(),
                    message: e.message().unwrap_or_default().trim_end().to_owned(),
                });
            }
            token = page.next_token().map(str::to_owned);
            if token.is_none() || found.len() >= limit {
                break;
            }
        }
        found.sort_by_key(|e| e.timestamp);
        found.truncate(limit);
        Ok(found)
    })
}
