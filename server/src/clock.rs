//! The wall clock and timestamp formatting: the one place the server reads the time, and how
//! it renders a millisecond timestamp for the API and operator messages.

/// Milliseconds since the Unix epoch (the one place the server reads the wall clock).
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// RFC 3339 UTC rendering of a millisecond timestamp, for the API and operator messages.
pub fn rfc3339_ms(ms: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}
