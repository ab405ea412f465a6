//! Validation of webhook endpoint settings from the API: every problem is collected, so one
//! 400 names them all. Pure: no IO, and never echoes a secret.

use reqwest::Url;

/// Longest accepted URL.
pub const MAX_URL: usize = 2048;
/// Shortest accepted secret.
pub const MIN_SECRET: usize = 16;
/// Longest accepted secret.
pub const MAX_SECRET: usize = 512;
/// Most action filters per endpoint.
pub const MAX_FILTERS: usize = 64;
/// Longest description.
pub const MAX_DESCRIPTION: usize = 1024;

/// Problems with a URL (empty: fine).
pub fn url(raw: &str, problems: &mut Vec<String>) {
    if raw.len() > MAX_URL {
        problems.push(format!(
            "url is {} characters; at most {MAX_URL} are allowed",
            raw.len()
        ));
        return;
    }
    let parsed = match Url::parse(raw) {
        Ok(u) => u,
        Err(e) => {
            problems.push(format!(
                // Not quoted: an unparsable URL may still hold a password.
                "url is not a valid absolute URL ({e}); use e.g. \"https://siem.example.com/hook\""
            ));
            return;
        }
    };
    if !matches!(parsed.scheme(), "http" | "https") {
        problems.push(format!(
            "url scheme {:?} is not supported; use http or https",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        problems.push("url must name a host".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // The URL is shown by the API; credentials belong in the receiver's own config.
        problems.push(
            "url must not contain a user name or password; the receiver authenticates \
             requests by their signature"
                .into(),
        );
    }
}

/// Problems with a secret (empty: fine). The secret itself is never quoted.
pub fn secret(s: &str, problems: &mut Vec<String>) {
    let n = s.chars().count();
    if n < MIN_SECRET {
        problems.push(format!(
            "secret is {n} characters; it needs at least {MIN_SECRET} (omit it to have one generated)"
        ));
    } else if n > MAX_SECRET {
        problems.push(format!(
            "secret is {n} characters; at most {MAX_SECRET} are allowed"
        ));
    }
    if s.chars().any(char::is_control) {
        problems.push("secret must not contain control characters".into());
    }
}

/// Problems with action filters (empty: fine).
pub fn events(list: &[String], problems: &mut Vec<String>) {
    if list.len() > MAX_FILTERS {
        problems.push(format!(
            "events has {} filters; at most {MAX_FILTERS} are allowed",
            list.len()
        ));
    }
    for f in list {
        let name = f.strip_suffix(".*").unwrap_or(f);
        let ok = f == "*"
            || (!name.is_empty()
                && name.len() <= 128
                && name.split('.').all(|part| {
                    !part.is_empty()
                        && part
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                }));
        if !ok {
            problems.push(format!(
                "events filter {f:?} must be an action (\"agent.revoke\"), a prefix \
                 (\"token.*\") or \"*\""
            ));
        }
    }
}

/// Problems with a description (empty: fine).
pub fn description(d: &str, problems: &mut Vec<String>) {
    if d.chars().count() > MAX_DESCRIPTION {
        problems.push(format!(
            "description is longer than {MAX_DESCRIPTION} characters"
        ));
    }
}

/// A fresh secret: `whsec_` and 48 random hex digits.
pub fn generate_secret() -> String {
    format!("whsec_{}", hex::encode(rand::random::<[u8; 24]>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: impl Fn(&mut Vec<String>)) -> Vec<String> {
        let mut p = Vec::new();
        f(&mut p);
        p
    }

    #[test]
    fn urls_need_http_a_host_and_no_credentials() {
        assert!(check(|p| url("https://siem.example.com/hook?x=1", p)).is_empty());
        assert!(check(|p| url("http://127.0.0.1:9000/", p)).is_empty());
        assert_eq!(check(|p| url("ftp://example.com/", p)).len(), 1);
        assert_eq!(check(|p| url("not a url", p)).len(), 1);
        assert_eq!(check(|p| url("https://user:pw@example.com/", p)).len(), 1);
        let p = check(|p| url("https://user:hunter2@example.com/", p));
        assert!(!p[0].contains("hunter2"), "{p:?}");
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL));
        assert_eq!(check(|p| url(&long, p)).len(), 1);
    }

    #[test]
    fn secrets_are_long_enough_and_never_quoted() {
        let p = check(|p| secret("short-secret", p));
        assert_eq!(p.len(), 1);
        assert!(!p[0].contains("short-secret"));
        assert!(check(|p| secret("0123456789abcdef", p)).is_empty());
        assert_eq!(check(|p| secret("0123456789abcdef\n", p)).len(), 1);
        let g = generate_secret();
        assert!(check(|p| secret(&g, p)).is_empty());
        assert_ne!(g, generate_secret());
    }

    #[test]
    fn filters_are_actions_prefixes_or_star() {
        let ok: Vec<String> = ["*", "token.*", "agent.revoke", "patrol.settings.update"]
            .map(String::from)
            .to_vec();
        assert!(check(|p| events(&ok, p)).is_empty());
        let bad: Vec<String> = ["", "token.", "Token.create", "a..b", "x*", ".*"]
            .map(String::from)
            .to_vec();
        assert_eq!(check(|p| events(&bad, p)).len(), bad.len());
    }
}
