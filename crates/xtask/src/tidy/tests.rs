//! Each rule fails on a small tree that breaks it and passes once the same code is where the
//! invariant allows it, so that no rule can pass for want of looking; and the repository itself
//! keeps every invariant.

use super::*;

/// A repository of a few files in a temporary directory.
struct Tree(tempfile::TempDir);

impl Tree {
    fn new() -> Tree {
        Tree(tempfile::tempdir().expect("a temporary directory"))
    }

    fn file(self, path: &str, text: &str) -> Tree {
        let p = self.0.path().join(path);
        std::fs::create_dir_all(p.parent().expect("a file in a directory")).expect("its directory");
        std::fs::write(&p, text).expect("the file");
        self
    }

    /// The violations of `rule` (stale exceptions aside: the real tables name files this tree
    /// does not have).
    fn violations(&self, rule: &str) -> Vec<(String, usize)> {
        let all = check(self.0.path()).expect("the tree reads");
        all.into_iter().filter(|v| v.rule == rule).map(|v| (v.path, v.line)).collect()
    }
}

fn at(path: &str, line: usize) -> (String, usize) {
    (path.to_owned(), line)
}

#[test]
fn an_environment_read_outside_the_loader_fails() {
    let read = "fn f() -> Option<std::ffi::OsString> {\n    std::env::var_os(\"XDG_CONFIG_HOME\")\n}\n";
    let tree = Tree::new().file("crates/hermes/src/install.rs", read).file("crates/hermes/src/load.rs", read);
    assert_eq!(tree.violations(ENV), [at("crates/hermes/src/install.rs", 2)]);
    // A grouped import is still a read; xtask is not hermes.
    let tree = Tree::new()
        .file("crates/hermes-gateway/src/media.rs", "use std::env::{self, var};\nfn f() { let _ = var(\"HOME\"); }\n")
        .file("crates/xtask/src/procs.rs", read);
    assert_eq!(tree.violations(ENV), [at("crates/hermes-gateway/src/media.rs", 1)]);
}

#[test]
fn comments_literals_and_test_code_are_not_code() {
    let text = r##"//! Reads `std::env::var("X")`, says the comment.
fn f<'a>(s: &'a str) -> char {
    let _ = "std::env::var(\"X\") in a message";
    let _ = r#"std::env::var("X") in a raw string"#;
    let _ = s;
    '{'
}
#[cfg(test)]
mod tests {
    fn g() { let _ = std::env::var("X"); let _ = '}'; }
}
#[cfg(all(test, feature = "simulator"))]
fn h() { let _ = std::env::var("X"); }
#[cfg(test)]
mod more;
fn i() { let _ = std::env::var("X"); }
"##;
    let tree = Tree::new()
        .file("crates/hermes/src/gateway.rs", text)
        .file("crates/hermes/src/gateway/more.rs", "fn j() { let _ = std::env::var(\"X\"); }\n");
    assert_eq!(tree.violations(ENV), [at("crates/hermes/src/gateway.rs", 16)]);
}

#[test]
fn a_runtime_outside_a_binarys_main_fails() {
    let text = "fn f() {\n    let rt = tokio::runtime::Builder::new_current_thread().build().expect(\"rt\");\n    \
                rt.block_on(async {});\n}\n";
    let tree = Tree::new().file("crates/hermes-gateway/src/lib.rs", text).file("crates/hermes/src/lib.rs", text);
    assert_eq!(
        tree.violations(RUNTIME),
        [at("crates/hermes-gateway/src/lib.rs", 2), at("crates/hermes-gateway/src/lib.rs", 3)]
    );
}

#[test]
fn io_in_hermes_core_fails_and_data_types_of_std_net_do_not() {
    let tree = Tree::new()
        .file(
            "crates/hermes-core/src/lib.rs",
            "use std::net::SocketAddr;\npub fn now() -> std::time::SystemTime {\n    std::time::SystemTime::now()\n}\n\
             #[cfg(test)]\nmod tests;\n",
        )
        .file("crates/hermes-core/src/tests.rs", "fn t() { std::fs::read(\"x\").expect(\"read\"); }\n")
        .file(
            "crates/hermes-core/Cargo.toml",
            "[package]\nname = \"hermes-core\"\n\n[dependencies]\nregex.workspace = true\ntokio.workspace = true\n\n\
             [dev-dependencies]\ntempfile.workspace = true\n",
        );
    assert_eq!(
        tree.violations(CORE_IO),
        [at("crates/hermes-core/Cargo.toml", 6), at("crates/hermes-core/src/lib.rs", 3)]
    );
}

#[test]
fn whatsapp_rust_outside_its_edge_fails() {
    let text = "use whatsapp_rust::Client;\n";
    let tree = Tree::new()
        .file("crates/hermes-gateway/src/lib.rs", text)
        .file("crates/hermes-whatsapp/src/lib.rs", text)
        .file(
            "crates/hermes-gateway/Cargo.toml",
            "[package]\nname = \"hermes-gateway\"\n[dependencies]\nwaproto.workspace = true\n",
        )
        .file(
            "crates/hermes/Cargo.toml",
            "[package]\nname = \"hermes\"\n[dev-dependencies]\nwaproto.workspace = true\n",
        );
    assert_eq!(
        tree.violations(WHATSAPP),
        [at("crates/hermes-gateway/Cargo.toml", 4), at("crates/hermes-gateway/src/lib.rs", 1)]
    );
}

#[test]
fn a_write_or_chmod_outside_the_one_writer_fails() {
    let text = "fn w(p: &std::path::Path) -> std::io::Result<()> {\n    std::fs::write(p, \"unit\")\n}\n";
    let tree = Tree::new().file("crates/hermes/src/install.rs", text).file("crates/hermes-store/src/files.rs", text);
    assert_eq!(tree.violations(WRITES), [at("crates/hermes/src/install.rs", 2)]);
}

#[test]
fn an_exception_that_excuses_nothing_any_more_fails() {
    let tree = Tree::new().file("crates/hermes/src/gateway.rs", "fn f() {}\n");
    let stale = tree.violations(STALE);
    assert!(stale.contains(&at("crates/hermes/src/gateway.rs", 0)), "{stale:?}");
}

#[test]
fn a_second_backoff_fails() {
    let hand_rolled = "fn resume_delay(k: u32) -> Duration {
    Duration::from_secs(1u64 << k.min(6))
}
struct RetryBackoff;
fn id() -> u128 {
    rand::random::<u128>() & ((1u128 << 72) - 1)
}
fn wait(delay: Duration) -> Duration {
    delay * 2
}
fn twenty(delay: Duration) -> Duration {
    delay * 20
}
const WALL: (u64, Duration) = (1024 << 20, Duration::from_secs(40));
";
    let tree = Tree::new()
        .file("crates/hermes-whatsapp/src/supervisor.rs", hand_rolled)
        .file("crates/hermes-core/src/backoff.rs", hand_rolled);
    let path = "crates/hermes-whatsapp/src/supervisor.rs";
    assert_eq!(tree.violations(BACKOFF), [at(path, 2), at(path, 4), at(path, 9)]);
}

#[test]
fn an_edge_the_crate_graph_does_not_have_fails() {
    let manifest = |name: &str, deps: &str| format!("[package]\nname = \"{name}\"\n\n[dependencies]\n{deps}");
    let tree = Tree::new()
        .file("crates/hermes-core/Cargo.toml", &manifest("hermes-core", "hermes-store.workspace = true\n"))
        .file("crates/hermes-store/Cargo.toml", &manifest("hermes-store", "hermes-core.workspace = true\n"))
        .file("crates/wa-sim/Cargo.toml", &manifest("wa-sim", "hermes-core.workspace = true\n"))
        .file("crates/hermes-whatsapp/Cargo.toml", &manifest("hermes-whatsapp", "wa-sim.workspace = true\n"))
        .file(
            "crates/hermes/Cargo.toml",
            &manifest(
                "hermes",
                "wa-sim = { workspace = true, optional = true }\n[dev-dependencies]\nxtask.workspace = true\n",
            ),
        )
        .file("crates/hermes-new/Cargo.toml", &manifest("hermes-new", ""))
        .file(
            "crates/xtask/Cargo.toml",
            &manifest("xtask", "hermes-store.workspace = true\nwa-sim.workspace = true\n"),
        );
    assert_eq!(
        tree.violations(GRAPH),
        [
            at("crates/hermes-core/Cargo.toml", 5),
            at("crates/hermes-new/Cargo.toml", 2),
            at("crates/hermes-whatsapp/Cargo.toml", 5),
            at("crates/hermes/Cargo.toml", 7),
            at("crates/wa-sim/Cargo.toml", 5),
        ]
    );
}

#[test]
fn a_danger_feature_outside_the_simulator_feature_fails() {
    let tree = Tree::new()
        .file(
            "crates/hermes-whatsapp/Cargo.toml",
            "[package]\nname = \"hermes-whatsapp\"\n[features]\ndefault = [\"simulator\"]\nsimulator = [\n    \
             \"whatsapp-rust/danger-skip-cert-chain-verify\",\n]\n[dependencies]\nwhatsapp-rust = { workspace = true, \
             features = [\"danger-skip-cert-chain-verify\"] }\n",
        )
        .file(
            "crates/hermes/Cargo.toml",
            "[package]\nname = \"hermes\"\n[dev-dependencies]\nwhatsapp-rust = { workspace = true, features = \
             [\"danger-skip-cert-chain-verify\"] }\n",
        );
    assert_eq!(
        tree.violations(SIMULATOR),
        [at("crates/hermes-whatsapp/Cargo.toml", 4), at("crates/hermes-whatsapp/Cargo.toml", 9)]
    );
}

#[test]
fn a_wa_sim_import_cycle_or_a_reach_upwards_fails() {
    let lib = "mod clock;\nmod media;\nmod router;\nmod sim;\nmod state;\npub use sim::Sim;\n";
    let tree = Tree::new()
        .file("crates/wa-sim/src/lib.rs", lib)
        .file("crates/wa-sim/src/state.rs", "pub(crate) struct Inner {\n    cdn: crate::media::Cdn,\n}\n")
        .file("crates/wa-sim/src/media.rs", "fn t() -> u64 {\n    crate::state::now()\n}\n")
        .file("crates/wa-sim/src/router.rs", "use crate::{state::Inner, Sim};\n")
        .file("crates/wa-sim/src/sim.rs", "use crate::state::Inner;\npub struct Sim;\n");
    assert_eq!(
        tree.violations(LAYERS),
        [at("crates/wa-sim/src/media.rs", 2), at("crates/wa-sim/src/router.rs", 1)],
        "the state <-> media cycle, and the router reaching sim (a re-export of the crate root)"
    );
    let tree = Tree::new()
        .file("crates/wa-sim/src/lib.rs", lib)
        .file("crates/wa-sim/src/state.rs", "pub(crate) struct Inner {\n    cdn: crate::media::Cdn,\n}\n")
        .file("crates/wa-sim/src/media.rs", "fn t() -> u64 {\n    crate::clock::now()\n}\n")
        .file("crates/wa-sim/src/router.rs", "use crate::state::Inner;\n")
        .file("crates/wa-sim/src/sim.rs", "use crate::{router, state::Inner};\npub struct Sim;\n");
    let layers = tree.violations(LAYERS);
    assert!(layers.is_empty(), "{layers:?}");
}

/// The check that CI runs: the repository keeps every invariant tidy knows.
#[test]
fn the_repository_keeps_every_invariant_tidy_checks() {
    let violations = check(&repo_root()).expect("the repository reads");
    let listed: Vec<String> = violations.iter().map(ToString::to_string).collect();
    assert!(violations.is_empty(), "{} violation(s):\n{}", violations.len(), listed.join("\n"));
}
