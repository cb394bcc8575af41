//! The name this program was started by, and the commands it prints spelled with it.
//!
//! On a machine with Hermes Agent, `hermes` is Hermes' CLI, and this program is installed as
//! `hermes-whatsapp`: a fix that says "run `hermes whatsapp repair`" would run Hermes' own
//! WhatsApp wizard instead. So everything printed (the crate's `println!` family, which
//! `lib.rs` routes through [`fix`], and the gateway's log) names this program's commands by
//! the name it was started by. Words about Hermes Agent's own commands are written without
//! that shape ("Hermes Agent's gateway"), so they are left alone.

use std::borrow::Cow;
use std::sync::OnceLock;

static NAME: OnceLock<&'static str> = OnceLock::new();

/// The names this program answers to.
const NAMES: [&str; 2] = ["hermes", "hermes-whatsapp"];

/// Reads the name from how the program was started (`argv[0]`); an unknown name (a copy renamed
/// by hand) keeps `hermes`, which its messages then name.
pub fn init() {
    let started_as = std::env::args_os()
        .next()
        .and_then(|a| std::path::Path::new(&a).file_name().and_then(|n| n.to_str()).map(str::to_owned));
    let name = NAMES.iter().find(|n| started_as.as_deref() == Some(**n)).copied().unwrap_or("hermes");
    let _ = NAME.set(name);
}

/// `hermes` or `hermes-whatsapp`.
pub fn name() -> &'static str {
    NAME.get().copied().unwrap_or("hermes")
}

/// `text` with the commands of this program (`hermes whatsapp ...`, `hermes gateway`...)
/// named by the name it was started by.
pub fn fix(text: &str) -> Cow<'_, str> {
    rename(text, name())
}

fn rename<'a>(text: &'a str, name: &str) -> Cow<'a, str> {
    static COMMAND: OnceLock<regex::Regex> = OnceLock::new();
    if name == "hermes" {
        return Cow::Borrowed(text);
    }
    let command = COMMAND.get_or_init(|| {
        regex::Regex::new(
            r#"(^|[\s`"'(:])hermes( (?:demo|doctor|gateway|history|pairing|pause|resume|send|whatsapp)\b)"#,
        )
        .expect("a regex")
    });
    command.replace_all(text, |c: &regex::Captures<'_>| format!("{}{name}{}", &c[1], &c[2]))
}

/// The gateway's log, its commands named as [`fix`] does.
#[derive(Clone, Copy, Debug)]
pub struct LogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine
    }
}

/// One formatted event, written to stderr.
#[derive(Debug)]
pub struct LogLine;

impl std::io::Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut err = std::io::stderr().lock();
        match std::str::from_utf8(buf) {
            Ok(text) if name() != "hermes" => err.write_all(fix(text).as_bytes())?,
            _ => err.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::rename;

    #[test]
    fn commands_are_named_by_the_program_and_nothing_else_changes() {
        let text = "run `hermes whatsapp repair` to link again; Start the gateway with: hermes gateway\n\
                    (hermes doctor says why). hermes-agent, /usr/bin/hermes gateway and hermes's log stay.";
        assert_eq!(
            rename(text, "hermes-whatsapp"),
            "run `hermes-whatsapp whatsapp repair` to link again; Start the gateway with: hermes-whatsapp gateway\n\
             (hermes-whatsapp doctor says why). hermes-agent, /usr/bin/hermes gateway and hermes's log stay."
        );
        assert_eq!(rename(text, "hermes"), text);
    }
}
