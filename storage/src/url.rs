//! Database URLs as they may appear in logs and errors: never with a password.

/// `url` with any password replaced by `***`: the `user:password@` part of the
/// authority and a `password=` query parameter.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end = out[authority_start..]
            .find(['/', '?'])
            .map_or(out.len(), |i| authority_start + i);
        if let Some(at) = out[authority_start..authority_end].rfind('@') {
            let userinfo = authority_start..authority_start + at;
            if let Some(colon) = out[userinfo.clone()].find(':') {
                out.replace_range(userinfo.start + colon + 1..userinfo.end, "***");
            }
        }
    }
    if let Some(query_start) = out.find('?') {
        let (head, query) = out.split_at(query_start + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_string(),
            })
            .collect();
        out = format!("{head}{}", query.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact_url("postgres://gw:s3cret@db.example:5432/gridwatch"),
            "postgres://gw:***@db.example:5432/gridwatch"
        );
        assert_eq!(
            redact_url("postgres:///gridwatch?host=/var/run/postgresql&password=s3cret"),
            "postgres:///gridwatch?host=/var/run/postgresql&password=***"
        );
        assert_eq!(redact_url("postgres://gw@h/db"), "postgres://gw@h/db");
        assert_eq!(redact_url("sqlite://data/gridwatch.db"), "sqlite://data/gridwatch.db");
        assert_eq!(redact_url("postgres://u:p@ss@h/db"), "postgres://u:***@h/db");
    }
}
