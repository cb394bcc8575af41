//! A temporary `HERMES_HOME` and a way to run the real binary against it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Home {
    // Kept for its Drop: the directory lives as long as the test.
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

/// What one run of `hermes` did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Home {
    /// An empty home on the same disk as the build (not /tmp, which may be a tmpfs and would
    /// change what doctor reports).
    pub fn new() -> Home {
        let dir =
            tempfile::Builder::new().prefix("hermes-home-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp home");
        let path = dir.path().join("hermes");
        fs::create_dir(&path).expect("create home");
        Home { _dir: dir, path }
    }

    pub fn with_env(self, text: &str) -> Home {
        fs::write(self.path.join(".env"), text).expect("write .env");
        self
    }

    pub fn with_yaml(self, text: &str) -> Home {
        fs::write(self.path.join("config.yaml"), text).expect("write config.yaml");
        self
    }

    /// The binary, with nothing from the caller's environment but PATH.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hermes"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path.parent().expect("parent"))
            .env("HERMES_HOME", &self.path);
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        run_output(self.command(args).output().expect("run hermes"))
    }

    /// Replaces this home's path with `[HOME]` in snapshots.
    pub fn filters(&self) -> Vec<(String, &'static str)> {
        // Free space is the machine's, not the test's.
        vec![(regex_escape(&self.path), "[HOME]"), (r"\d+ MiB free".to_owned(), "[N] MiB free")]
    }
}

pub fn run_output(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

fn regex_escape(p: &Path) -> String {
    let mut out = String::new();
    for c in p.display().to_string().chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Runs an insta assertion with this home's path hidden.
#[macro_export]
macro_rules! snapshot {
    ($home:expr, $name:expr, $value:expr) => {{
        let filters = $home.filters();
        let filters: Vec<(&str, &str)> = filters.iter().map(|(a, b)| (a.as_str(), *b)).collect();
        insta::with_settings!({ filters => filters, prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!($name, $value);
        });
    }};
}

impl Home {
    /// Runs with extra variables in the process environment.
    pub fn run_with(&self, vars: &[(&str, &str)], args: &[&str]) -> Run {
        let mut cmd = self.command(args);
        cmd.envs(vars.iter().copied());
        run_output(cmd.output().expect("run hermes"))
    }
}
