//! Secrets out of anything shown or logged: URLs that carry credentials.
//!
//! A model's `base_url` may hold a password (`https://user:pass@host/v1`) or a key in its query
//! (`?api_key=...`), as some proxies want. Both are replaced, so `doctor`, the start-up log and
//! error messages can still name the server.

/// `url` with the password of its user info, the value of every query parameter (a bare one
/// whole) and the fragment replaced by `***`. Anything that does not look like a URL comes back unchanged.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (before_fragment, fragment) = match rest.split_once('#') {
        Some((a, f)) => (a, Some(f)),
        None => (rest, None),
    };
    let (before_query, query) = match before_fragment.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (before_fragment, None),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            if userinfo.contains(':') { format!("{user}:***@{host}") } else { format!("***@{host}") }
        }
        None => authority.to_owned(),
    };
    let mut out = format!("{scheme}://{authority}{path}");
    if let Some(q) = query {
        let params: Vec<String> = q
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) => format!("{k}=***"),
                // A bare token (`?sk-...`) may be the key itself.
                None if p.is_empty() => String::new(),
                None => "***".to_owned(),
            })
            .collect();
        out = format!("{out}?{}", params.join("&"));
    }
    if fragment.is_some() {
        out = format!("{out}#***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[track_caller]
    fn check(url: &str, expected: &str) {
        assert_eq!(redact_url(url), expected);
    }

    #[test]
    fn credentials_never_survive() {
        check("https://openrouter.ai/api/v1", "https://openrouter.ai/api/v1");
        check("https://bob:s3cret@proxy.example/v1", "https://bob:***@proxy.example/v1");
        check("https://tok3n@proxy.example/v1", "https://***@proxy.example/v1");
        check("https://proxy.example/v1?api_key=s3cret&x=1", "https://proxy.example/v1?api_key=***&x=***");
        check("http://a:b@127.0.0.1:8080?key=k#frag", "http://a:***@127.0.0.1:8080?key=***#***");
        check("https://proxy.example/v1?sk-s3cret", "https://proxy.example/v1?***");
        check("not a url", "not a url");
        check("https://host/p@th?q", "https://host/p@th?***");
    }

    proptest::proptest! {
        #[test]
        fn a_password_or_query_value_is_never_shown(pass in "[a-zA-Z0-9]{8,20}", key in "[a-zA-Z0-9]{8,20}") {
            let shown = redact_url(&format!("https://u:{pass}@h.example/v1?api_key={key}"));
            proptest::prop_assert!(!shown.contains(&pass) && !shown.contains(&key), "{}", shown);
        }
    }
}
