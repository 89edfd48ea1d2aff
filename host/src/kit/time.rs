//! Now, in the spellings history, names and records use.

/// Now, as RFC 3339 UTC to the second.
pub fn now_rfc3339() -> String {
    rfc3339(std::time::SystemTime::now())
}

/// `time` as RFC 3339 UTC to the second.
pub fn rfc3339(time: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Now as `YYYYMMDDTHHMMSSZ`, for names (backup ids, a restore's databases).
pub fn utc_stamp() -> String {
    now_rfc3339()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect()
}
