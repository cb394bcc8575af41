//! `cargo run -p xtask -- tidy`: the **Invariant** lines of ARCHITECTURE.md, checked, so that
//! the document cannot drift from the code (after rust-analyzer's `xtask/src/tidy.rs`). An
//! invariant no check enforces is a wish.
//!
//! Each rule is a grep scoped to paths, over the code with comments, literals and test-only
//! items taken out (see [`source`]), or a check of the crates' `Cargo.toml`s. Code allowed to
//! do what a rule forbids is listed below with the reason, and an exception that no longer
//! matches anything is itself a failure, so the lists cannot outlive what they excuse. The
//! rules, as ARCHITECTURE.md names them:
//!
//! - `env`: environment variables are read in `crates/hermes/src/load.rs` only.
//! - `runtime`: a tokio runtime is built (or entered with `block_on`) in a binary's `main` only.
//! - `core-io`: `hermes-core` does no I/O and depends on no I/O crate.
//! - `whatsapp-types`: only `hermes-whatsapp` of hermes' crates names or depends on whatsapp-rust.
//! - `file-writes`: files are written and chmodded by `hermes_store::files` only.
//! - `backoff`: no delay grows exponentially outside `hermes_core::backoff`.
//! - `crate-graph`: the crate dependency graph of ARCHITECTURE.md, and nothing depends on xtask.
//! - `simulator-only`: whatsapp-rust's `danger-*` features come in through `simulator` only.
//! - `wa-sim-layers`: wa-sim's modules import each other in layers, without a cycle.
//!
//! Test code (`tests/`, `#[cfg(test)]`) and xtask itself are not hermes, and are not checked
//! but for the crate graph. Fast by design: plain reads and string scans, no cargo metadata.

mod source;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use source::{SourceFile, bounded, is_ident, read_tree, relative, sorted_entries};

const ENV: &str = "env";
const RUNTIME: &str = "runtime";
const CORE_IO: &str = "core-io";
const WHATSAPP: &str = "whatsapp-types";
const WRITES: &str = "file-writes";
const BACKOFF: &str = "backoff";
const GRAPH: &str = "crate-graph";
const SIMULATOR: &str = "simulator-only";
const LAYERS: &str = "wa-sim-layers";
const STALE: &str = "stale-exception";

/// Code allowed to do what a rule forbids: in the file `path`, on the lines containing `line`
/// as written (`""`: anywhere in the file), for the reason `why`.
#[derive(Debug)]
struct Exception {
    path: &'static str,
    line: &'static str,
    why: &'static str,
}

const ENV_READS: &[&str] = &[
    "env::var",
    "env::var_os",
    "env::vars",
    "env::vars_os",
    "env::home_dir",
    "from_default_env",
    "try_from_default_env",
    "from_env",
    "try_from_env",
];

const ENV_EXCEPTIONS: &[Exception] = &[
    Exception {
        path: "crates/hermes/src/load.rs",
        line: "",
        why: "the loader: every variable hermes reads, the simulator build's test hooks (HERMES_CRASH_AT, \
              HERMES_TEST_TIME_SCALE, HERMES_TEST_MOUNTINFO) included",
    },
    Exception {
        path: "crates/hermes/src/demo.rs",
        line: "var_os(\"PATH\")",
        why: "the demo's gateway starts with a cleared environment but for the caller's PATH, which finds programs \
              and configures nothing",
    },
    Exception {
        path: "crates/hermes/src/gateway.rs",
        line: "try_from_default_env",
        why: "RUST_LOG, the log filter, read where the binary sets its subscriber up: no setting of hermes",
    },
    Exception {
        path: "crates/wa-sim/src/main.rs",
        line: "from_default_env",
        why: "RUST_LOG for `wa-sim serve`, a program of its own",
    },
];

const RUNTIME_CALLS: &[&str] = &["runtime::Builder", "Runtime::new", "block_on", "tokio::main"];

const RUNTIME_EXCEPTIONS: &[Exception] = &[
    Exception { path: "crates/hermes/src/lib.rs", line: "", why: "hermes' one runtime, on which every command runs" },
    Exception {
        path: "crates/wa-sim/src/main.rs",
        line: "",
        why: "the one runtime of `wa-sim serve`, a program of its own",
    },
];

const CORE_IO_CALLS: &[&str] = &[
    "std::fs",
    "std::env",
    "std::process",
    "std::thread",
    "std::os",
    "std::io::stdin",
    "std::io::stdout",
    "std::io::stderr",
    "TcpStream",
    "TcpListener",
    "UdpSocket",
    "UnixStream",
    "UnixListener",
    "to_socket_addrs",
    "SystemTime::now",
    "Instant::now",
    "rand::",
    "getrandom",
    "tokio",
    "println!",
    "eprintln!",
    "print!",
    "eprint!",
];

/// hermes-core's dependencies, each reviewed to do no I/O of its own.
const CORE_DEPS: &[(&str, &str)] = &[
    ("regex", "matches text it is given"),
    ("serde", "traits and derives, no format and no I/O"),
    ("sha2", "hashes the bytes it is given (the transcript ids of Hermes Agent's sessions)"),
    ("strsim", "string similarity, for near misses"),
    ("thiserror", "error types"),
    ("yaml-rust2", "parses the config.yaml text it is given"),
];

const WHATSAPP_NAMES: &[&str] =
    &["whatsapp_rust", "wacore", "wacore_binary", "wacore_libsignal", "wacore_noise", "waproto"];
const WHATSAPP_CRATES: &[&str] =
    &["whatsapp-rust", "wacore", "wacore-binary", "wacore-libsignal", "wacore-noise", "waproto"];
/// The crates that may depend on whatsapp-rust's: the edge, the simulator, and xtask's echo bot.
const WHATSAPP_USERS: &[&str] = &["hermes-whatsapp", "wa-sim", "xtask"];

const WRITE_CALLS: &[&str] =
    &["fs::write", "fs::copy", "File::create", "File::create_new", "OpenOptions::new", "set_permissions"];

const WRITE_EXCEPTIONS: &[Exception] = &[
    Exception {
        path: "crates/hermes-store/src/files.rs",
        line: "",
        why: "the one atomic writer and private-directory creator",
    },
    Exception {
        path: "crates/hermes-whatsapp/src/lock.rs",
        line: "OpenOptions::new()",
        why: "the session lock: a file held under flock, its holder's PID written into it in place (replacing it \
              would drop the lock)",
    },
    Exception {
        path: "crates/hermes-whatsapp/src/session_dir.rs",
        line: "create_new(true)",
        why: "the write probe: a new file (O_EXCL) under a name of its own, renamed and removed at once",
    },
    Exception {
        path: "crates/hermes-whatsapp/src/media.rs",
        line: "mode(0o600)",
        why: "a download, streamed into a new 0600 `.part` file that is renamed into place once verified: too large \
              to hold for one write",
    },
    Exception {
        path: "crates/hermes-whatsapp/src/linking.rs",
        line: "from_mode(0o600)",
        why: "narrows to 0600 the files whatsapp-rust's store created in the new session, a directory hermes created",
    },
    Exception {
        path: "crates/hermes-gateway/src/media.rs",
        line: "set_permissions(dir",
        why: "narrows a media cache directory (Hermes' names, maybe made wider by Hermes) to 0700: media is personal \
              data; never through a symlink (symlink_metadata first)",
    },
    Exception {
        path: "crates/hermes/src/gateway.rs",
        line: "set_permissions(state",
        why: "narrows hermes' own state/ (the control token, the journal) to 0700, never through a symlink",
    },
    Exception {
        path: "crates/hermes/src/send.rs",
        line: "OpenOptions::new().read(true)",
        why: "opens the control file for reading only, refusing a symlink",
    },
    Exception {
        path: "crates/hermes/src/demo.rs",
        line: "File::create(&log)",
        why: "the demo gateway's stderr: a log in the demo's own temporary HERMES_HOME",
    },
    Exception {
        path: "crates/hermes-agent/src/loopback/real.rs",
        line: "std::fs::write(&stamp",
        why: "the tests' and the benchmark's virtualenv: a stamp of the lock file it was made from, in a target \
              directory, never a file of a user's",
    },
];

/// Arithmetic that grows a number exponentially when what follows it is a variable (`1 << n`,
/// `2u64.pow(attempt)`; `1024 << 20` is a constant). Doubling (`* 2`) is found apart.
const EXPONENTIAL: &[&str] = &["<<", "pow(", "powi(", "powf(", "_shl(", ".shl("];
const DOUBLING: &[&str] = &["*= 2", "* 2", "mul(2", "mul_f64(2", "mul_f32(2"];
/// Words that say the number is a delay.
const DELAY_WORDS: &[&str] = &["duration", "delay", "backoff", "retry", "sleep", "timeout", "interval", "pause"];

const BACKOFF_EXCEPTIONS: &[Exception] =
    &[Exception { path: "crates/hermes-core/src/backoff.rs", line: "", why: "the one backoff" }];

/// The crate graph of ARCHITECTURE.md: the workspace crates each crate may depend on in its
/// `[dependencies]` (dev-dependencies are free). `*`: any but xtask.
const CRATE_GRAPH: &[(&str, &[&str])] = &[
    ("hermes-core", &[]),
    ("hermes-store", &["hermes-core"]),
    ("hermes-agent", &["hermes-core"]),
    ("hermes-whatsapp", &["hermes-core", "hermes-store", "wa-sim"]),
    // The pipeline knows no WhatsApp crate: the binary joins it to the edge.
    ("hermes-gateway", &["hermes-core", "hermes-store", "hermes-agent"]),
    ("hermes", &["hermes-core", "hermes-store", "hermes-agent", "hermes-whatsapp", "hermes-gateway", "wa-sim"]),
    // It stands in for WhatsApp: sharing hermes' code, it would share hermes' assumptions.
    ("wa-sim", &[]),
    ("xtask", &["*"]),
];

/// Edges of the graph that only the opt-in `simulator` feature may bring in: never part of
/// the build users install.
const SIMULATOR_EDGES: &[(&str, &str, &str)] = &[
    ("hermes-whatsapp", "wa-sim", "the simulator build reaches wa-sim's media CDN over plain HTTP"),
    ("hermes", "wa-sim", "`hermes demo` runs a simulator"),
];

/// wa-sim's layering (ARCHITECTURE.md): the modules each of these may not reach through its
/// imports. `state` is the world the others are built on; the stanza handlers never reach the
/// connection or the API that drive them.
const WA_SIM_BELOW: &[(&str, &[&str])] = &[
    ("state", &["router", "link", "messages", "usync", "conn", "sim"]),
    ("router", &["conn", "sim"]),
    ("link", &["conn", "sim"]),
    ("messages", &["conn", "sim"]),
    ("usync", &["conn", "sim"]),
];

/// One broken invariant, where it is broken.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Violation {
    /// From the repository root.
    pub path: String,
    /// 1-based; 0 for the file as a whole.
    pub line: usize,
    pub rule: &'static str,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}: [{}] {}", self.path, self.rule, self.message),
            line => write!(f, "{}:{line}: [{}] {}", self.path, self.rule, self.message),
        }
    }
}

pub fn run() -> anyhow::Result<()> {
    let root = repo_root();
    let violations = check(&root).with_context(|| format!("read the tree at {}", root.display()))?;
    if violations.is_empty() {
        println!("tidy: every invariant of ARCHITECTURE.md that tidy checks holds");
        return Ok(());
    }
    for v in &violations {
        eprintln!("{v}");
    }
    anyhow::bail!(
        "tidy: {} place(s) break an invariant of ARCHITECTURE.md; each line above says the fix",
        violations.len()
    )
}

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every violation in the tree at `root`, sorted.
pub(crate) fn check(root: &Path) -> io::Result<Vec<Violation>> {
    let files = read_tree(root)?;
    let manifests = read_manifests(root)?;
    let mut out = Vec::new();
    let fix = "only crates/hermes/src/load.rs reads environment variables; read it there and pass the value in, or, \
               if it is no setting, add an exception with its reason to ENV_EXCEPTIONS in crates/xtask/src/tidy.rs";
    scan(&files, ENV, |k| k != "xtask", ENV_EXCEPTIONS, needles(ENV_READS, "reads the environment", fix), &mut out);
    let fix = "a process has one runtime, built in its binary's main; make this async and run it on the caller's \
               runtime, or add an exception with its reason to RUNTIME_EXCEPTIONS in crates/xtask/src/tidy.rs";
    scan(
        &files,
        RUNTIME,
        |k| k != "xtask",
        RUNTIME_EXCEPTIONS,
        needles(RUNTIME_CALLS, "runs a runtime", fix),
        &mut out,
    );
    let fix = "hermes-core does no I/O; do it in the caller and pass the result in";
    scan(&files, CORE_IO, |k| k == "hermes-core", &[], needles(CORE_IO_CALLS, "is I/O", fix), &mut out);
    let fix = "only hermes-whatsapp knows whatsapp-rust; convert to a core type at its boundary (Jid::from_wire, \
               messenger::wire) and use that";
    let outside_edge = |k: &str| is_hermes(k) && k != "hermes-whatsapp";
    scan(&files, WHATSAPP, outside_edge, &[], needles(WHATSAPP_NAMES, "is whatsapp-rust's", fix), &mut out);
    let fix = "files hermes keeps are written by hermes_store::files (write_private, or write_readable for what \
               others must read); use it, or add an exception with its reason to WRITE_EXCEPTIONS in \
               crates/xtask/src/tidy.rs";
    scan(&files, WRITES, is_hermes, WRITE_EXCEPTIONS, needles(WRITE_CALLS, "writes or chmods a file", fix), &mut out);
    scan(&files, BACKOFF, is_hermes, BACKOFF_EXCEPTIONS, hand_rolled_backoff, &mut out);
    wa_sim_layers(&files, &mut out);
    crate_graph(&manifests, &mut out);
    manifest_rules(&manifests, &mut out);
    out.sort();
    out.dedup();
    Ok(out)
}

fn is_hermes(krate: &str) -> bool {
    krate == "hermes" || krate.starts_with("hermes-")
}

/// Reports what `find` finds in the crates `in_scope` allows, unless an exception allows it,
/// and every exception that allowed nothing.
fn scan(
    files: &[SourceFile],
    rule: &'static str,
    in_scope: impl Fn(&str) -> bool,
    exceptions: &[Exception],
    find: impl Fn(&SourceFile) -> Vec<(usize, String)>,
    out: &mut Vec<Violation>,
) {
    let mut used = vec![false; exceptions.len()];
    for f in files.iter().filter(|f| in_scope(&f.krate)) {
        for (line, message) in find(f) {
            let written = f.raw_line(line);
            match exceptions.iter().position(|e| e.path == f.path && written.contains(e.line)) {
                Some(i) => used[i] = true,
                None => out.push(Violation { path: f.path.clone(), line, rule, message }),
            }
        }
    }
    for (e, used) in exceptions.iter().zip(used) {
        if !used {
            let which = if e.line.is_empty() { "for the whole file".to_owned() } else { format!("for `{}`", e.line) };
            out.push(Violation {
                path: e.path.to_owned(),
                line: 0,
                rule: STALE,
                message: format!(
                    "the [{rule}] exception {which} ({}) matches nothing any more: remove it from \
                     crates/xtask/src/tidy.rs (and from ARCHITECTURE.md's invariant, if it is named there)",
                    e.why
                ),
            });
        }
    }
}

/// A finder for the lines where any of `list` is written as code.
fn needles(
    list: &'static [&'static str],
    what: &'static str,
    fix: &'static str,
) -> impl Fn(&SourceFile) -> Vec<(usize, String)> {
    move |f: &SourceFile| {
        let mut found = Vec::new();
        for n in list {
            for line in f.lines_with(n) {
                found.push((line, format!("`{n}` {what}: {fix}")));
            }
        }
        found
    }
}

/// A delay computed as a power of two by hand, or a type of its own named for a backoff.
fn hand_rolled_backoff(f: &SourceFile) -> Vec<(usize, String)> {
    let fix = "hermes has one backoff; use hermes_core::backoff::Backoff (`ceiling` for the plain doubling, `delay` \
               for full jitter)";
    let mut found = Vec::new();
    for (i, line) in f.code.lines().enumerate() {
        let lower = line.to_ascii_lowercase();
        let grows = EXPONENTIAL.iter().any(|e| by_a_variable(&lower, e)) || DOUBLING.iter().any(|d| doubles(&lower, d));
        if grows && DELAY_WORDS.iter().any(|w| lower.contains(w)) {
            found.push((i + 1, format!("a delay grows exponentially by hand: {fix}")));
        }
    }
    for kw in ["struct", "enum", "type", "trait"] {
        for (at, _) in f.code.match_indices(kw) {
            let rest = &f.code[at + kw.len()..];
            if !bounded(&f.code, at, kw) || !rest.starts_with(char::is_whitespace) {
                continue;
            }
            let name: String = rest.trim_start().bytes().take_while(|&c| is_ident(c)).map(char::from).collect();
            if name.to_ascii_lowercase().contains("backoff") {
                found.push((f.line_of(at), format!("`{kw} {name}` is a second backoff: {fix}")));
            }
        }
    }
    found.retain(|(line, _)| !f.is_test(*line));
    found
}

/// `operator` in `line`, followed by a name or a parenthesis rather than a number.
fn by_a_variable(line: &str, operator: &str) -> bool {
    line.match_indices(operator).any(|(at, _)| {
        let operand = line[at + operator.len()..].trim_start_matches('=').trim_start();
        operand.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == '(')
    })
}

/// `pattern` in `line`, not followed by a further digit (`* 2`, but not `* 25`).
fn doubles(line: &str, pattern: &str) -> bool {
    line.match_indices(pattern).any(|(at, _)| !line[at + pattern.len()..].starts_with(|c: char| c.is_ascii_digit()))
}

/// wa-sim's module imports: no cycle, and nothing of [`WA_SIM_BELOW`] reached.
fn wa_sim_layers(files: &[SourceFile], out: &mut Vec<Violation>) {
    let edges = wa_sim_imports(files);
    let mut graph: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        graph.entry(from.as_str()).or_default().push(to.as_str());
    }
    let why = "(ARCHITECTURE.md: a wa-sim module imports from its own layer or below)";
    for (from, banned) in WA_SIM_BELOW {
        for to in *banned {
            if let Some(path) = route(&graph, from, to) {
                let (file, line) = &edges[&(path[0].to_owned(), path[1].to_owned())];
                out.push(Violation {
                    path: file.clone(),
                    line: *line,
                    rule: LAYERS,
                    message: format!(
                        "`{from}` reaches `{to}` through its imports ({}), a module built on it {why}; move what it \
                         needs down into `{from}` or below it",
                        path.join(" -> ")
                    ),
                });
            }
        }
    }
    let mut cycles = BTreeSet::new();
    for ((from, to), (file, line)) in &edges {
        let Some(back) = route(&graph, to, from) else { continue };
        let members: BTreeSet<&str> = back.iter().copied().collect();
        if cycles.insert(members) {
            out.push(Violation {
                path: file.clone(),
                line: *line,
                rule: LAYERS,
                message: format!(
                    "an import cycle: {from} -> {} {why}; move what the lower module needs into it or below it",
                    back.join(" -> ")
                ),
            });
        }
    }
}

/// Every import between two of wa-sim's modules, at the first place it is made.
fn wa_sim_imports(files: &[SourceFile]) -> BTreeMap<(String, String), (String, usize)> {
    let module_of = |f: &SourceFile| -> Option<String> {
        let first = f.path.strip_prefix("crates/wa-sim/src/")?.split('/').next()?;
        Some(first.strip_suffix(".rs").unwrap_or(first).to_owned())
    };
    let sim: Vec<(String, &SourceFile)> =
        files.iter().filter(|f| f.krate == "wa-sim").filter_map(|f| Some((module_of(f)?, f))).collect();
    let modules: BTreeSet<&str> =
        sim.iter().map(|(m, _)| m.as_str()).filter(|m| !matches!(*m, "lib" | "main")).collect();
    // What the crate root re-exports, by name, to the module it comes from.
    let mut reexports = BTreeMap::new();
    for (_, f) in sim.iter().filter(|(m, _)| m == "lib") {
        for (_, path) in f.uses() {
            let path = path.trim_start_matches("crate::").trim_start_matches("self::");
            if let (Some((module, _)), Some((_, name))) = (path.split_once("::"), path.rsplit_once("::"))
                && modules.contains(module)
            {
                reexports.insert(name.to_owned(), module.to_owned());
            }
        }
    }
    let resolve = |name: &str| -> Option<String> {
        if modules.contains(name) { Some(name.to_owned()) } else { reexports.get(name).cloned() }
    };
    let mut edges = BTreeMap::new();
    for (from, f) in sim.iter().filter(|(m, _)| modules.contains(m.as_str())) {
        let mut named: Vec<(usize, String)> = Vec::new();
        for (at, _) in f.code.match_indices("crate::").filter(|(at, _)| bounded(&f.code, *at, "crate::")) {
            let first: String = f.code[at + 7..].bytes().take_while(|&c| is_ident(c)).map(char::from).collect();
            named.push((f.line_of(at), first));
        }
        for (line, path) in f.uses() {
            if let Some(rest) = path.strip_prefix("crate::") {
                named.push((*line, rest.split("::").next().unwrap_or("").to_owned()));
            }
        }
        for (line, name) in named {
            if f.is_test(line) {
                continue;
            }
            if let Some(to) = resolve(&name).filter(|to| to != from) {
                let at = edges.entry((from.clone(), to)).or_insert((f.path.clone(), line));
                at.1 = at.1.min(line);
            }
        }
    }
    edges
}

/// The modules on a shortest import path from `from` to `to`, both included.
fn route<'a>(graph: &BTreeMap<&'a str, Vec<&'a str>>, from: &'a str, to: &str) -> Option<Vec<&'a str>> {
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([from]);
    while let Some(at) = queue.pop_front() {
        for &next in graph.get(at).into_iter().flatten() {
            if next == to {
                let mut path = vec![next, at];
                let mut back = at;
                while back != from {
                    back = came_from[back];
                    path.push(back);
                }
                path.reverse();
                return Some(path);
            }
            if next != from && !came_from.contains_key(next) {
                came_from.insert(next, at);
                queue.push_back(next);
            }
        }
    }
    None
}

/// A `Cargo.toml`, as far as tidy reads it.
#[derive(Debug, Default)]
struct Manifest {
    /// From the repository root.
    path: String,
    name: String,
    name_line: usize,
    /// `[dependencies]` (target-specific ones too): what every build of the crate links.
    deps: Vec<Dep>,
    dev_deps: Vec<Dep>,
    /// `[features]`: (line, name, value as written on its first line).
    features: Vec<(usize, String, String)>,
    /// Lines naming a `danger-` feature: (line, section, key).
    danger: Vec<(usize, String, String)>,
}

#[derive(Debug)]
struct Dep {
    name: String,
    line: usize,
    optional: bool,
}

/// The workspace's `Cargo.toml` first, then each crate's.
fn read_manifests(root: &Path) -> io::Result<Vec<Manifest>> {
    let mut paths = vec![root.join("Cargo.toml")];
    paths.extend(sorted_entries(&root.join("crates"))?.into_iter().map(|d| d.join("Cargo.toml")));
    let mut manifests = Vec::new();
    for p in paths.into_iter().filter(|p| p.is_file()) {
        manifests.push(parse_manifest(relative(root, &p), &std::fs::read_to_string(&p)?));
    }
    Ok(manifests)
}

fn parse_manifest(path: String, text: &str) -> Manifest {
    let mut m = Manifest { path, ..Manifest::default() };
    let mut section = String::new();
    // The key of the entry being read, and how many brackets its value has left open.
    let (mut key, mut open) = (String::new(), 0i32);
    // A `[dependencies.NAME]` table, whose `optional = true` comes on a line of its own.
    let mut table: Option<(bool, usize)> = None;
    for (i, written) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = uncommented(written).trim();
        if open > 0 {
            open += brackets(line);
            if line.contains("danger-") {
                m.danger.push((line_no, section.clone(), key.clone()));
            }
            continue;
        }
        if line.starts_with('[') {
            section = line.trim_matches(['[', ']']).trim().to_owned();
            key.clear();
            table = None;
            if let Some((kind, name)) = section.rsplit_once('.').filter(|(k, _)| is_deps(k)) {
                let dev = kind.ends_with("dev-dependencies");
                let list = if dev { &mut m.dev_deps } else { &mut m.deps };
                list.push(Dep { name: name.to_owned(), line: line_no, optional: false });
                table = Some((dev, list.len() - 1));
            }
            continue;
        }
        let Some((k, value)) = line.split_once('=') else { continue };
        key = k.trim().trim_matches('"').to_owned();
        open = brackets(value);
        if value.contains("danger-") {
            m.danger.push((line_no, section.clone(), key.clone()));
        }
        let value = value.trim();
        let optional = value.replace(' ', "").contains("optional=true");
        match section.as_str() {
            "package" if key == "name" => (m.name, m.name_line) = (value.trim_matches('"').to_owned(), line_no),
            "features" => m.features.push((line_no, key.clone(), value.to_owned())),
            s if is_deps(s) => {
                let dep = Dep { name: key.split('.').next().unwrap_or("").to_owned(), line: line_no, optional };
                if s.ends_with("dev-dependencies") { m.dev_deps.push(dep) } else { m.deps.push(dep) }
            }
            _ => {
                if let Some((dev, at)) = table
                    && key == "optional"
                    && value == "true"
                {
                    let list = if dev { &mut m.dev_deps } else { &mut m.deps };
                    list[at].optional = true;
                }
            }
        }
    }
    m
}

/// `[dependencies]`, `[dev-dependencies]`, `[build-dependencies]`, `[target.X.dependencies]`.
fn is_deps(section: &str) -> bool {
    ["dependencies", "dev-dependencies", "build-dependencies"]
        .iter()
        .any(|d| section == *d || (section.starts_with("target.") && section.ends_with(&format!(".{d}"))))
}

/// A line without its `#` comment (a `#` inside a string stays).
fn uncommented(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

/// Brackets and braces opened minus closed.
fn brackets(s: &str) -> i32 {
    s.chars()
        .map(|c| match c {
            '[' | '{' => 1,
            ']' | '}' => -1,
            _ => 0,
        })
        .sum()
}

fn crate_graph(manifests: &[Manifest], out: &mut Vec<Violation>) {
    let members: BTreeSet<&str> = manifests.iter().map(|m| m.name.as_str()).filter(|n| !n.is_empty()).collect();
    let mut push = |m: &Manifest, line: usize, message: String| {
        out.push(Violation { path: m.path.clone(), line, rule: GRAPH, message });
    };
    for m in manifests.iter().filter(|m| !m.name.is_empty()) {
        let name = &m.name;
        for d in m.deps.iter().chain(&m.dev_deps).filter(|d| d.name == "xtask") {
            let message = format!(
                "`{name}` depends on xtask: nothing does (a tool of this repository, never part of a build); remove \
                 the dependency"
            );
            push(m, d.line, message);
        }
        let Some((_, allowed)) = CRATE_GRAPH.iter().find(|(crate_name, _)| crate_name == name) else {
            let message = format!(
                "`{name}` is not in tidy's crate graph: add it to CRATE_GRAPH in crates/xtask/src/tidy.rs with the \
                 crates it may depend on, and to ARCHITECTURE.md's crate diagram"
            );
            push(m, m.name_line, message);
            continue;
        };
        let internal = m.deps.iter().filter(|d| members.contains(d.name.as_str()) && d.name != *name);
        for d in internal.filter(|d| d.name != "xtask") {
            let dep = &d.name;
            let simulator_only = SIMULATOR_EDGES.iter().find(|(from, to, _)| from == name && to == dep);
            if !allowed.iter().any(|a| *a == "*" || a == dep) {
                let message = format!(
                    "`{name}` depends on `{dep}`, an edge ARCHITECTURE.md's crate graph does not have (core <- \
                     store/agent/whatsapp; store/agent <- gateway; all <- hermes; hermes-core and wa-sim depend on no \
                     hermes crate): remove it, or make the new edge a reviewed change of its own, in CRATE_GRAPH and \
                     ARCHITECTURE.md"
                );
                push(m, d.line, message);
            } else if let Some((_, _, why)) = simulator_only
                && !d.optional
            {
                let message = format!(
                    "`{name}` depends on `{dep}` in every build: make it `optional = true`, brought in by the \
                     `simulator` feature only ({why})"
                );
                push(m, d.line, message);
            }
        }
    }
}

/// hermes-core's dependencies, whatsapp-rust's crates, and the `danger-*` features.
fn manifest_rules(manifests: &[Manifest], out: &mut Vec<Violation>) {
    for m in manifests {
        let name = &m.name;
        let mut push = |line: usize, rule: &'static str, message: String| {
            out.push(Violation { path: m.path.clone(), line, rule, message });
        };
        if name == "hermes-core" {
            for d in m.deps.iter().filter(|d| !CORE_DEPS.iter().any(|(core_dep, _)| *core_dep == d.name)) {
                let dep = &d.name;
                let message = format!(
                    "hermes-core depends on `{dep}`: the core does no I/O, and depends only on crates reviewed to do \
                     none; if `{dep}` does none, add it with the reason to CORE_DEPS in crates/xtask/src/tidy.rs"
                );
                push(d.line, CORE_IO, message);
            }
        }
        if !name.is_empty() && !WHATSAPP_USERS.contains(&name.as_str()) {
            for d in m.deps.iter().filter(|d| WHATSAPP_CRATES.contains(&d.name.as_str())) {
                let dep = &d.name;
                let message = format!(
                    "`{name}` depends on `{dep}`: only hermes-whatsapp knows whatsapp-rust (wa-sim and xtask stand \
                     beside hermes); take what it offers through hermes-whatsapp, or make it a dev-dependency of tests"
                );
                push(d.line, WHATSAPP, message);
            }
        }
        // The workspace's own manifest (no name) sets features for every member.
        if !name.is_empty() && !is_hermes(name) {
            continue;
        }
        for (line, section, key) in &m.danger {
            let opt_in = (section == "features" && key != "default") || section.ends_with("dev-dependencies");
            if !opt_in || name.is_empty() {
                let message = format!(
                    "a `danger-*` feature of whatsapp-rust in [{section}]: the build users install verifies \
                     WhatsApp's certificate chain; bring it in through an opt-in `simulator` feature only"
                );
                push(*line, SIMULATOR, message);
            }
        }
        for (line, _, value) in m.features.iter().filter(|(_, feature, _)| feature == "default") {
            if value.contains("simulator") || value.contains("danger-") {
                let message = "the default features include the simulator build: keep it opt-in (`--features \
                               simulator`)";
                push(*line, SIMULATOR, message.to_owned());
            }
        }
    }
}
