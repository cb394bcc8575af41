//! Named crash points for the crash tests of the simulator build.
//!
//! The exactly-once promise is only as good as its worst-timed crash, so the tests kill the
//! gateway at each step that matters (journaled but not acked, answered but not committed,
//! committed but not sent, sent but not marked) and count what the contact receives after a
//! restart. [`arm`] is called by the binary, in the simulator build only, from
//! `HERMES_CRASH_AT`; without the `simulator` feature [`point`] does nothing.

use std::sync::OnceLock;

static ARMED: OnceLock<String> = OnceLock::new();

/// Makes the process kill itself (SIGKILL, as a power cut or the OOM killer would) the first
/// time it reaches the point named `at`.
#[cfg(feature = "simulator")]
pub fn arm(at: &str) {
    let _ = ARMED.set(at.to_owned());
}

/// A step reached while handling `subject` (a question's text): armed as `NAME:NEEDLE`, the
/// process aborts (SIGABRT, as a failed allocation or a library's assertion would) every time
/// it reaches `name` with a subject that contains `NEEDLE`: a poison message, for the tests
/// that prove one is given up and the others answered.
pub fn point_for(name: &str, subject: &str) {
    let Some((at, needle)) = ARMED.get().and_then(|a| a.split_once(':')) else { return };
    if at == name && subject.contains(needle) {
        tracing::warn!(point = name, "crash point reached for a poison message: aborting the process");
        std::process::abort();
    }
}

/// A step at which a crash must lose nothing and repeat nothing.
pub fn point(name: &str) {
    if ARMED.get().is_some_and(|a| a == name) {
        tracing::warn!(point = name, "crash point reached: killing the process");
        let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}
