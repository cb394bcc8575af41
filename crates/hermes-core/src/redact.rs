//! Secrets out of anything shown or logged: URLs that carry credentials.
//!
//! A model's `base_url` may hold a password (`https://user:pass@host/v1`) or a key in its query
//! (`?api_key=...`), as some proxies want. A webhook's URL is its own secret, kept in the path:
//! Slack's `/services/T…/B…/<secret>`, Discord's `/api/webhooks/<id>/<token>`, Telegram's
//! `/bot<id>:<token>/`, or any long random part. All of these are replaced, keeping the scheme,
//! the host and the readable first parts of the path, so `doctor`, the logs and error messages
//! still say which URL it is without handing its key to whoever reads them.

/// `url` with the password of its user info, the value of every query parameter (a bare one
/// whole), the fragment and every path part that looks like a secret replaced by `***`: the
/// parts of a known webhook service from where its secret sits, the parts after a `webhook(s)`
/// or `hook(s)` part (numbers alone, ids, are kept), Telegram's `bot<token>`, and any part with a
/// long random-looking run (`looks_random`). Anything that does not look like a URL comes back
/// unchanged.
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
    let host = host_name(authority.rsplit_once('@').map_or(authority, |(_, h)| h));
    let path = redact_path(&host, path);
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

/// Webhook services whose secret sits at a known place in the path: the parts before it are
/// kept (they say which workspace or account), every part from that one on is hidden.
const SECRET_FROM_PART: &[(&str, usize)] = &[
    // /services/T…/B…/<secret>, /workflows/T…/A…/<id>/<secret>, /triggers/…
    ("hooks.slack.com", 3),
    // /hooks/catch/<account>/<secret>/
    ("hooks.zapier.com", 3),
    // /<topic>: whoever knows the topic reads and writes it.
    ("ntfy.sh", 0),
];

/// Path parts after which the rest names one webhook and is its secret: Discord's
/// `/api/webhooks/<id>/<token>`, Home Assistant's `/api/webhook/<id>`, Mattermost's
/// `/hooks/<key>`, Teams' `/webhookb2/…`.
const WEBHOOK_PARTS: &[&str] = &["webhook", "webhooks", "webhookb2", "hook", "hooks"];

/// The host of an authority (`host:port`, `[v6]:port`), lowercase, for comparing with known hosts.
fn host_name(host_port: &str) -> String {
    let name = match host_port.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(inside, _)| inside),
        None => host_port.split_once(':').map_or(host_port, |(name, _)| name),
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// `path` (empty or from its leading `/`) with the parts that look like secrets replaced.
fn redact_path(host: &str, path: &str) -> String {
    let Some(rest) = path.strip_prefix('/') else { return path.to_owned() };
    let hide_from = SECRET_FROM_PART
        .iter()
        .find(|(known, _)| host == *known || host.strip_suffix(*known).is_some_and(|sub| sub.ends_with('.')))
        .map(|(_, from)| *from);
    let mut after_webhook = false;
    let parts: Vec<String> = rest
        .split('/')
        .enumerate()
        .map(|(i, part)| {
            let secret_place = match hide_from {
                Some(from) => i >= from,
                // A number alone is the webhook's id (Discord's), which tells two apart.
                None => after_webhook && !part.bytes().all(|b| b.is_ascii_digit()),
            };
            let hidden = secret_place || looks_random(part);
            after_webhook |= WEBHOOK_PARTS.iter().any(|w| part.eq_ignore_ascii_case(w));
            if part.is_empty() {
                String::new()
            } else if is_telegram_token(part) {
                "bot***".to_owned()
            } else if hidden {
                "***".to_owned()
            } else {
                part.to_owned()
            }
        })
        .collect();
    format!("/{}", parts.join("/"))
}

/// Telegram's `bot<id>:<secret>` (the colon perhaps percent-encoded), on its API host or a proxy.
fn is_telegram_token(part: &str) -> bool {
    part.strip_prefix("bot").is_some_and(|token| {
        let colon = token.contains(':') || token.contains("%3A") || token.contains("%3a");
        token.starts_with(|c: char| c.is_ascii_digit()) && colon
    })
}

/// A part that reads as a key rather than words: a run of at least 16 letters and digits mixed
/// (hex, base64, a generated id), or of 32 of anything (no word is that long). Any other
/// character ends a run, so model names, dates and versions (`gpt-4o-mini-2024-07-18`,
/// `v1beta`, `chat/completions`) stay readable. A key of fewer than 32 letters and no digit
/// passes for a word: the known services' rules above catch theirs.
fn looks_random(part: &str) -> bool {
    part.split(|c: char| !c.is_ascii_alphanumeric()).any(|run| {
        let mixed = run.bytes().any(|b| b.is_ascii_digit()) && run.bytes().any(|b| b.is_ascii_alphabetic());
        (run.len() >= 16 && mixed) || run.len() >= 32
    })
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

    /// Issue 25: `hermes doctor` printed a Slack webhook whole, token included.
    #[test]
    fn issue_25_webhook_tokens_in_the_path_never_survive() {
        check(
            "https://hooks.slack.com/services/T000/B000/XXXXSECRET",
            "https://hooks.slack.com/services/T000/B000/***",
        );
        check(
            "https://hooks.slack.com/workflows/T01ABCDEF/A02BCDEFG/123456/XXXXSECRET",
            "https://hooks.slack.com/workflows/T01ABCDEF/A02BCDEFG/***/***",
        );
        check(
            "https://discord.com/api/webhooks/123456789012345678/AbCdEf-token_value",
            "https://discord.com/api/webhooks/123456789012345678/***",
        );
        check(
            "https://canary.discord.com/api/v10/webhooks/123456789012345678/AbCdEf/slack",
            "https://canary.discord.com/api/v10/webhooks/123456789012345678/***/***",
        );
        check(
            "https://api.telegram.org/bot123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11/sendMessage?chat_id=42",
            "https://api.telegram.org/bot***/sendMessage?chat_id=***",
        );
        check("https://tg.example/bot123456%3Aabc/sendMessage", "https://tg.example/bot***/sendMessage");
        check(
            "https://chat.googleapis.com/v1/spaces/AAAAB3NzaC1/messages?key=AIzaSyD&token=abc%3D",
            "https://chat.googleapis.com/v1/spaces/AAAAB3NzaC1/messages?key=***&token=***",
        );
        check("https://alerts.example/notify/9f86d081884c7d659a2feaa0c55ad015", "https://alerts.example/notify/***");
        check("https://alerts.example/notify/sk-proj-Ab12Cd34Ef56Gh78/now", "https://alerts.example/notify/***/now");
        check("http://127.0.0.1:8123/api/webhook/my-secret-hook", "http://127.0.0.1:8123/api/webhook/***");
        check("https://chat.example/hooks/xq8zb4kxmiyfpbrqmwq7ad1w3c", "https://chat.example/hooks/***");
        check(
            "https://contoso.webhook.office.com/webhookb2/7aa4c1d1-ffff@72f988bf/IncomingWebhook/0123abcd/9e8b",
            "https://contoso.webhook.office.com/webhookb2/***/***/***/***",
        );
        check(
            "https://hooks.zapier.com/hooks/catch/123456/abcdef/",
            "https://hooks.zapier.com/hooks/catch/123456/***/",
        );
        check("https://ntfy.sh/hermes-alerts", "https://ntfy.sh/***");
        check(
            "https://u:p@HOOKS.Slack.com:443/services/T0/B0/S",
            "https://u:***@HOOKS.Slack.com:443/services/T0/B0/***",
        );
    }

    #[test]
    fn ordinary_paths_stay_readable() {
        for url in [
            "https://api.openai.com/v1/chat/completions",
            "https://openrouter.ai/api/v1",
            "https://generativelanguage.googleapis.com/v1beta/openai/",
            "https://res.openai.azure.com/openai/deployments/gpt-4o-mini-2024-07-18",
            "http://127.0.0.1:11434/v1",
            "https://api.groq.com/openai/v1/audio/transcriptions",
            "https://example.com/hooks",
            "https://example.com/",
            "https://example.com",
        ] {
            check(url, url);
        }
    }

    proptest::proptest! {
        #[test]
        fn a_password_or_query_value_is_never_shown(pass in "[a-zA-Z0-9]{8,20}", key in "[a-zA-Z0-9]{8,20}") {
            let shown = redact_url(&format!("https://u:{pass}@h.example/v1?api_key={key}"));
            proptest::prop_assert!(!shown.contains(&pass) && !shown.contains(&key), "{}", shown);
        }

        #[test]
        fn a_webhook_token_is_never_shown(
            token in "[A-Za-z0-9]{24}",
            discord in "[A-Za-z][A-Za-z0-9_-]{40,70}",
            telegram in "[A-Za-z0-9_-]{35}",
            random in "[A-Za-z0-9]{32,64}",
        ) {
            for (url, secret) in [
                (format!("https://hooks.slack.com/services/T0123ABCD/B0123ABCD/{token}"), &token),
                (format!("https://discord.com/api/webhooks/123456789012345678/{discord}"), &discord),
                (format!("https://api.telegram.org/bot123456789:{telegram}/sendMessage"), &telegram),
                (format!("https://alerts.example/v1/{random}/send"), &random),
            ] {
                let shown = redact_url(&url);
                proptest::prop_assert!(!shown.contains(secret.as_str()), "{}", shown);
            }
        }
    }
}
