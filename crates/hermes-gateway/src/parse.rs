//! Files from outside are parsed in a child process, never in the gateway: a PDF whose nested
//! forms draw 12^12 times, a PNG that inflates to gigabytes, an Ogg whose header asks for
//! gigabytes. The child (`hermes __parse JOB PATH CPU MEMORY`, the binary itself) sets limits
//! on itself before it reads a byte (CPU seconds, address space, no core file, no file it
//! could write), and the gateway gives it a wall-clock deadline and kills it when the deadline
//! passes or the gateway stops: a hostile file costs at most one child, the chat's later
//! messages are answered, and a shutdown never waits on a parser.
//!
//! Nothing here trusts the child either: what it prints is read as JSON of a known shape, and
//! anything else (a crash, a signal, a limit) is an error the agent is told about in words.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The hidden subcommand the binary runs a child as.
pub const CHILD_COMMAND: &str = "__parse";

/// A thread of this size runs the parsing in the child: the PDF reader recurses into nested
/// objects, and a stack overflow must end the child with a message, not at random.
const CHILD_STACK: usize = 64 * 1024 * 1024;

/// What a child is asked to make of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    /// A PDF's text layer.
    PdfText,
    /// A picture as a `data:` URL a vision model reads (shrunk and re-encoded when needed).
    Picture,
    /// Audio made a voice note (Ogg Opus, its length and waveform).
    VoiceNote,
}

impl Job {
    pub fn word(self) -> &'static str {
        match self {
            Job::PdfText => "pdf-text",
            Job::Picture => "picture",
            Job::VoiceNote => "voice-note",
        }
    }

    pub fn from_word(word: &str) -> Option<Job> {
        [Job::PdfText, Job::Picture, Job::VoiceNote].into_iter().find(|j| j.word() == word)
    }

    /// What one file of this kind may cost. Generous for what a phone sends (a 20 MB PDF's
    /// text, a 12-megapixel photo, 15 minutes of audio encoded), far below what hurts a small
    /// server.
    fn limits(self) -> Limits {
        match self {
            Job::PdfText => Limits { cpu_secs: 20, memory_bytes: 1024 << 20, wall: Duration::from_secs(40) },
            Job::Picture => Limits { cpu_secs: 15, memory_bytes: 1024 << 20, wall: Duration::from_secs(30) },
            Job::VoiceNote => Limits { cpu_secs: 90, memory_bytes: 1536 << 20, wall: Duration::from_secs(180) },
        }
    }
}

/// What a child may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Limits {
    cpu_secs: u64,
    /// Address space, which bounds what it can allocate (its binary and stacks included).
    memory_bytes: u64,
    /// Past this the gateway kills it, whatever it is waiting for.
    wall: Duration,
}

/// How the gateway starts a child: the program (hermes itself) and the arguments that make it
/// one.
#[derive(Clone, Debug)]
pub struct Parser {
    program: PathBuf,
    args: Vec<String>,
    /// Time limits multiplied by this (tests of the simulator build shorten them).
    time_scale: f64,
}

/// A file a child could not make anything of; the message says why, in words for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// What a child made of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parsed {
    Text(String),
    DataUrl(String),
    VoiceNote(crate::voice::VoiceNote),
}

impl Parser {
    /// `program args.. JOB PATH CPU MEMORY` runs a child: the binary passes itself and
    /// [`CHILD_COMMAND`].
    pub fn new(program: PathBuf, args: Vec<String>) -> Parser {
        Parser { program, args, time_scale: 1.0 }
    }

    /// Time limits scaled (a test's way to meet them in seconds, not minutes).
    pub fn with_time_scale(mut self, scale: f64) -> Parser {
        if scale.is_finite() && scale > 0.0 {
            self.time_scale = scale;
        }
        self
    }

    /// A PDF's text layer, read by a child.
    pub(crate) async fn pdf_text(&self, path: &Path) -> Result<String, ParseError> {
        match self.run(Job::PdfText, path).await? {
            Parsed::Text(text) => Ok(text),
            other => Err(out_of_turn(Job::PdfText, &other)),
        }
    }

    /// A picture as a `data:` URL, made by a child.
    pub(crate) async fn picture(&self, path: &Path) -> Result<String, ParseError> {
        match self.run(Job::Picture, path).await? {
            Parsed::DataUrl(url) => Ok(url),
            other => Err(out_of_turn(Job::Picture, &other)),
        }
    }

    /// Audio made a voice note, by a child.
    pub(crate) async fn voice_note(&self, path: &Path) -> Result<crate::voice::VoiceNote, ParseError> {
        match self.run(Job::VoiceNote, path).await? {
            Parsed::VoiceNote(note) => Ok(note),
            other => Err(out_of_turn(Job::VoiceNote, &other)),
        }
    }

    /// Runs `job` on `path` in a child; the child is killed if this future is dropped.
    async fn run(&self, job: Job, path: &Path) -> Result<Parsed, ParseError> {
        let limits = job.limits();
        let cpu = ((limits.cpu_secs as f64 * self.time_scale).ceil() as u64).max(1);
        let wall = limits.wall.mul_f64(self.time_scale).max(Duration::from_secs(2));
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(&self.args)
            .arg(job.word())
            .arg(path)
            .arg(cpu.to_string())
            .arg(limits.memory_bytes.to_string())
            // Nothing of the gateway's (API keys in the environment) goes to a parser.
            .env_clear()
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let child = command
            .spawn()
            .map_err(|e| ParseError(format!("cannot start a parser ({}): {e}", self.program.display())))?;
        let output = match tokio::time::timeout(wall, child.wait_with_output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => return Err(ParseError(format!("the parser failed: {e}"))),
            // Dropping the wait kills the child (`kill_on_drop`); tokio reaps it.
            Err(_) => {
                return Err(ParseError(format!("reading it took longer than {} s, so it was stopped", wall.as_secs())));
            }
        };
        if output.status.success() {
            return match serde_json::from_slice::<Result<Parsed, String>>(&output.stdout) {
                Ok(Ok(parsed)) => Ok(parsed),
                Ok(Err(why)) => Err(ParseError(why)),
                Err(e) => Err(ParseError(format!("the parser's answer cannot be read: {e}"))),
            };
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(ParseError(ended(output.status, &stderr, cpu, limits.memory_bytes)))
    }
}

/// A child that answered with another job's kind of answer: a bug, said as one.
fn out_of_turn(job: Job, answer: &Parsed) -> ParseError {
    let kind = match answer {
        Parsed::Text(_) => "text",
        Parsed::DataUrl(_) => "a picture",
        Parsed::VoiceNote(_) => "a voice note",
    };
    ParseError(format!("the {} parser answered with {kind} (a bug)", job.word()))
}

/// Why a child ended without an answer, from its status and what it said last.
fn ended(status: std::process::ExitStatus, stderr: &str, cpu: u64, memory: u64) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    const SIGKILL: i32 = 9;
    const SIGXCPU: i32 = 24;
    if stderr.contains("memory allocation of") || stderr.contains("capacity overflow") {
        return format!("reading it needed more than {} MB of memory, so it was stopped", memory >> 20);
    }
    if stderr.contains("overflowed its stack") {
        return "it is nested too deeply to read".to_owned();
    }
    match status.signal() {
        Some(SIGXCPU | SIGKILL) => format!("reading it took more than {cpu} s of CPU, so it was stopped"),
        Some(signal) => format!("the parser ended on signal {signal}"),
        None => {
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
            format!("the parser failed ({status}): {last}")
        }
    }
}

/// The child's side: limits itself, does the job, prints `{"Ok": ..}` or `{"Err": ".."}`;
/// returns the exit status. A limit it meets ends it by signal or abort, which the parent
/// tells apart.
pub fn child(job: &str, path: &Path, cpu_secs: u64, memory_bytes: u64) -> u8 {
    let Some(job) = Job::from_word(job) else {
        eprintln!("unknown job '{job}'");
        return 2;
    };
    if let Err(e) = limit_self(cpu_secs, memory_bytes) {
        // Never parse without the limits.
        eprintln!("cannot set the parser's limits: {e}");
        return 3;
    }
    let path = path.to_owned();
    let work = std::thread::Builder::new()
        .name(job.word().to_owned())
        .stack_size(CHILD_STACK)
        .spawn(move || do_job(job, &path));
    let result = match work.map(std::thread::JoinHandle::join) {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err("the parser failed on this file".to_owned()),
        Err(e) => Err(format!("cannot start the parser's thread: {e}")),
    };
    match serde_json::to_string(&result) {
        Ok(json) => {
            println!("{json}");
            0
        }
        Err(e) => {
            eprintln!("cannot write the answer: {e}");
            4
        }
    }
}

fn limit_self(cpu_secs: u64, memory_bytes: u64) -> std::io::Result<()> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    let set = |resource, soft: u64, hard: u64| {
        setrlimit(resource, Rlimit { current: Some(soft), maximum: Some(hard) }).map_err(std::io::Error::from)
    };
    // SIGXCPU at the soft limit, SIGKILL a second later should it be caught.
    set(Resource::Cpu, cpu_secs, cpu_secs + 1)?;
    set(Resource::As, memory_bytes, memory_bytes)?;
    set(Resource::Core, 0, 0)?;
    // It writes nothing but its answer on a pipe.
    set(Resource::Fsize, 0, 0)?;
    Ok(())
}

fn do_job(job: Job, path: &Path) -> Result<Parsed, String> {
    match job {
        Job::PdfText => pdf_extract::extract_text(path).map(Parsed::Text).map_err(|e| e.to_string()),
        Job::Picture => crate::media::data_url(path).map(Parsed::DataUrl),
        Job::VoiceNote => crate::voice::voice_note(path).map(Parsed::VoiceNote),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_round_trip_through_their_words() {
        for job in [Job::PdfText, Job::Picture, Job::VoiceNote] {
            assert_eq!(Job::from_word(job.word()), Some(job));
        }
        assert_eq!(Job::from_word("shell"), None);
    }

    #[test]
    fn how_a_child_ended_is_said_in_words() {
        use std::os::unix::process::ExitStatusExt as _;
        let by = |signal: i32| std::process::ExitStatus::from_raw(signal);
        assert!(ended(by(24), "", 20, 1 << 30).contains("more than 20 s of CPU"));
        assert!(ended(by(9), "", 20, 1 << 30).contains("more than 20 s of CPU"));
        let oom = "memory allocation of 2400000000 bytes failed\n";
        assert!(ended(by(6), oom, 20, 1 << 30).contains("more than 1024 MB of memory"));
        assert!(ended(by(6), "thread 'x' has overflowed its stack\n", 20, 1 << 30).contains("nested too deeply"));
        let panicked = std::process::ExitStatus::from_raw(101 << 8);
        assert!(ended(panicked, "boom\n", 20, 1 << 30).contains("boom"));
    }
}
