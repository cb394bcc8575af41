//! `hermes whatsapp drops`: every message the gateway did not answer, grouped by sender, with
//! the rule that refused it and what would admit it. The answer to "it's connected but
//! nothing arrives".

use std::collections::BTreeMap;
use std::io::Write as _;

use anyhow::Context as _;
use hermes_store::Dropped;
use serde_json::json;

use crate::{exit, load};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How far back: 30m, 1h, 2d... (default 24h).
    #[arg(long, default_value = "24h", value_parser = parse_age)]
    since: u64,
    /// Print one JSON object: {"since", "senders": [{"sender", "forms", "count", "first", "last", "rules", "chats", "nearest", "hint"}]}.
    #[arg(long)]
    json: bool,
}

/// `30s`, `15m`, `1h`, `2d`, `1w` as seconds.
pub fn parse_age(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("'{s}' is not a duration: write e.g. 30m, 1h or 2d"))?;
    let mult = match unit {
        "s" => 1,
        "m" | "" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(format!("'{s}': unknown unit '{unit}'; use s, m, h, d or w")),
    };
    Ok(n * mult)
}

struct Group<'a> {
    drops: Vec<&'a Dropped>,
}

pub fn run(profile: Option<&str>, args: &Args) -> anyhow::Result<u8> {
    let loaded = load::load(profile)?;
    let now = hermes_store::clock::now();
    let since = now.saturating_sub(i64::try_from(args.since).unwrap_or(i64::MAX)).max(0);
    let db = loaded.home.path.join("state").join("hermes.db");
    // Reading never creates the database: no file means the gateway never ran here.
    let drops = match hermes_store::Store::open_read_only(&db).with_context(|| format!("open {}", db.display()))? {
        Some(store) => store.drops_since(since).with_context(|| format!("read the drops in {}", db.display()))?,
        None => Vec::new(),
    };
    let mut groups: BTreeMap<String, Group<'_>> = BTreeMap::new();
    for d in &drops {
        groups.entry(d.sender.to_string()).or_insert_with(|| Group { drops: Vec::new() }).drops.push(d);
    }
    // Most recent first: the sender someone is waiting on is usually the last one.
    let mut groups: Vec<(String, Group<'_>)> = groups.into_iter().collect();
    groups.sort_by_key(|(_, g)| std::cmp::Reverse(g.drops.last().map_or(0, |d| d.at)));
    let mut out = std::io::stdout().lock();
    if args.json {
        let senders: Vec<_> = groups
            .iter()
            .map(|(sender, g)| {
                let last = g.drops.last().expect("a group has a drop");
                json!({
                    "sender": sender,
                    "forms": forms(g),
                    "count": g.drops.len(),
                    "first": g.drops[0].at,
                    "last": last.at,
                    "rules": distinct(g.drops.iter().map(|d| d.rule.as_str())),
                    "chats": distinct(g.drops.iter().map(|d| d.chat.to_string())),
                    "nearest": last.nearest,
                    "hint": last.hint,
                })
            })
            .collect();
        writeln!(out, "{}", json!({ "since": since, "senders": senders }))?;
        return Ok(exit::OK);
    }
    let window = describe_age(args.since);
    if groups.is_empty() {
        writeln!(out, "No message was dropped in the last {window}.")?;
        if !db.exists() {
            writeln!(out, "(The gateway has not run with this HERMES_HOME yet: {}.)", loaded.home.path.display())?;
        }
        return Ok(exit::OK);
    }
    let n = groups.len();
    writeln!(out, "{n} sender{} dropped in the last {window}:", if n == 1 { "" } else { "s" })?;
    for (sender, g) in &groups {
        let last = g.drops.last().expect("a group has a drop");
        let others: Vec<String> = forms(g).into_iter().filter(|f| f != sender).collect();
        let also = if others.is_empty() { String::new() } else { format!(" (also {})", others.join(", ")) };
        let count = g.drops.len();
        writeln!(out)?;
        writeln!(
            out,
            "{sender}{also}: {count} message{}, last {} ago",
            if count == 1 { "" } else { "s" },
            describe_age(u64::try_from(now.saturating_sub(last.at)).unwrap_or(0))
        )?;
        writeln!(out, "  rule: {}", distinct(g.drops.iter().map(|d| d.rule.as_str())).join(", "))?;
        if let Some(n) = &last.nearest {
            writeln!(out, "  nearest allowlist entry: {n}")?;
        }
        if let Some(h) = &last.hint {
            writeln!(out, "  why: {h}")?;
        }
        writeln!(out, "  details: hermes whatsapp explain {}", last.sender.user())?;
    }
    Ok(exit::OK)
}

fn forms(g: &Group<'_>) -> Vec<String> {
    distinct(g.drops.iter().flat_map(|d| d.sender_forms.iter().map(ToString::to_string)))
}

fn distinct(items: impl Iterator<Item = impl AsRef<str>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in items {
        if !out.iter().any(|o| o == i.as_ref()) {
            out.push(i.as_ref().to_owned());
        }
    }
    out
}

fn describe_age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}
