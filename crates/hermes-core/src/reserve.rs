//! Free space against the reserve (`WHATSAPP_MIN_FREE_MB`): whether receiving pauses, and what
//! the user can do about it. The storage guard, `hermes whatsapp status`, `doctor` and
//! `/readyz` all say it in these words.
//!
//! Below the reserve the gateway stops receiving, so that nothing is acknowledged that could not
//! be kept. On a disk that filled up, "free some space" is the cure. On a volume not much bigger
//! than the reserve it is a dead end: a 24 MiB volume never has the default 64 MiB free, and the
//! gateway pauses from its first second. The reserve is still kept as configured: it is what
//! stands between a filling disk and a commit that fails halfway, and a gateway that quietly
//! shrank it would meet the very full disk it guards against. What changes is the advice: when
//! the volume is less than twice the reserve (freeing space there might make room for a while,
//! but the reserve would take half of the volume or more), the fix says, with numbers, what
//! works: a lower reserve, or a bigger volume.

use std::path::Path;

const MIB: u64 = 1024 * 1024;

/// A volume is big enough for the reserve from this many times the reserve.
pub const ROOM_FACTOR: u64 = 2;

/// One filesystem, as statvfs tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Space {
    /// Bytes this user may still write.
    pub free: u64,
    /// Bytes this user could have on it in all (its size less what is kept for root); 0 when
    /// the filesystem does not say.
    pub total: u64,
}

/// Free space against the reserve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Room {
    /// Well above the reserve.
    Plenty,
    /// Above the reserve, not by much: receiving pauses if the disk goes on filling.
    Low,
    /// Below the reserve on a volume that can hold it: receiving pauses until space is freed.
    BelowReserve,
    /// The volume is less than [`ROOM_FACTOR`] times the reserve: only a lower reserve (such as
    /// `suggested_mb`) or a bigger volume makes lasting room. `pauses` when free space is below
    /// the reserve already.
    VolumeTooSmall { pauses: bool, suggested_mb: u64 },
}

impl Room {
    /// Receiving pauses: there is less free space than the reserve.
    pub fn pauses(self) -> bool {
        match self {
            Room::BelowReserve => true,
            Room::VolumeTooSmall { pauses, .. } => pauses,
            Room::Plenty | Room::Low => false,
        }
    }
}

/// The room on a filesystem with `space`, for a reserve of `reserve_bytes`.
pub fn room(space: Space, reserve_bytes: u64) -> Room {
    let pauses = space.free < reserve_bytes;
    // A filesystem that reports no size (some FUSE ones do) is never called small.
    if space.total > 0 && space.total < reserve_bytes.saturating_mul(ROOM_FACTOR) {
        // A quarter of the volume: below half of it, with room above for the journal to grow.
        let suggested_mb = (space.total / 4 / MIB).max(1);
        return Room::VolumeTooSmall { pauses, suggested_mb };
    }
    if pauses {
        Room::BelowReserve
    } else if space.free < reserve_bytes.saturating_mul(4).max(256 * MIB) {
        Room::Low
    } else {
        Room::Plenty
    }
}

/// The room on one filesystem, in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub room: Room,
    /// What was found: the free space, against the reserve when that matters.
    pub problem: String,
    /// What the user can do; `None` with plenty of room.
    pub fix: Option<String>,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.fix {
            Some(fix) => write!(f, "{}: {fix}", self.problem),
            None => f.write_str(&self.problem),
        }
    }
}

/// The room on the filesystem holding `dir`, which has `space`, for a reserve of
/// `reserve_bytes`, with what to do about it.
pub fn judge(dir: &Path, space: Space, reserve_bytes: u64) -> Verdict {
    let room = room(space, reserve_bytes);
    let (dir, free, total, reserve) = (dir.display(), space.free / MIB, space.total / MIB, reserve_bytes / MIB);
    let below = || {
        format!(
            "{dir} has {free} MiB free, below the {reserve} MiB reserve (WHATSAPP_MIN_FREE_MB): the gateway stops \
             receiving until there is room"
        )
    };
    let (problem, fix) = match room {
        Room::Plenty => (format!("{dir} has {free} MiB free"), None),
        Room::Low => (
            format!("{dir} has only {free} MiB free"),
            Some(format!(
                "free some disk space before it fills: below the {reserve} MiB reserve the gateway stops receiving"
            )),
        ),
        Room::BelowReserve => (
            below(),
            Some(format!(
                "free some space on the volume holding {dir} (or set WHATSAPP_MIN_FREE_MB lower); hermes resumes \
                 receiving by itself, and WhatsApp keeps the messages until then"
            )),
        ),
        Room::VolumeTooSmall { pauses, suggested_mb } => {
            let problem = if pauses {
                below()
            } else {
                let left = space.free.saturating_sub(reserve_bytes) / MIB;
                format!(
                    "{dir} has {free} MiB free on a volume of {total} MiB: receiving pauses once {left} MiB more is \
                     used"
                )
            };
            let than = if space.total <= reserve_bytes { "smaller than" } else { "less than twice" };
            let fix = format!(
                "the volume holding {dir} is {total} MiB in all, {than} the WHATSAPP_MIN_FREE_MB reserve of \
                 {reserve} MiB: set WHATSAPP_MIN_FREE_MB lower (e.g. {suggested_mb}) and restart the gateway, or \
                 give HERMES_HOME a bigger volume"
            );
            (problem, Some(fix))
        }
    };
    Verdict { room, problem, fix }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(free_mib: u64, total_mib: u64, reserve_mib: u64, expected: Room) {
        let space = Space { free: free_mib * MIB, total: total_mib * MIB };
        let reserve = reserve_mib * MIB;
        assert_eq!(room(space, reserve), expected, "{free_mib} MiB free of {total_mib}, reserve {reserve_mib}");
    }

    /// Issue 25: the default reserve on a 24 MiB volume paused receiving from the first second,
    /// and the fix it gave (free some space) could not work.
    #[test]
    fn issue_25_the_volume_decides_whether_freeing_space_can_help() {
        check(20, 24, 64, Room::VolumeTooSmall { pauses: true, suggested_mb: 6 });
        check(30, 100, 64, Room::VolumeTooSmall { pauses: true, suggested_mb: 25 });
        check(90, 100, 64, Room::VolumeTooSmall { pauses: false, suggested_mb: 25 });
        check(1, 2, 64, Room::VolumeTooSmall { pauses: true, suggested_mb: 1 });
        // Twice the reserve is enough: freeing space is the cure there.
        check(10, 128, 64, Room::BelowReserve);
        check(100, 128, 64, Room::Low);
        check(4, 32, 8, Room::BelowReserve);
        check(200, 100_000, 64, Room::Low);
        check(300, 100_000, 64, Room::Plenty);
        check(300, 100_000, 100, Room::Low);
        // No size reported: judged on free space alone.
        check(10, 0, 64, Room::BelowReserve);
        // No reserve: never paused, never too small.
        check(0, 24, 0, Room::Low);
    }

    #[test]
    fn the_fix_says_what_works() {
        let dir = Path::new("/data/hermes/state");
        let v = judge(dir, Space { free: 20 * MIB, total: 24 * MIB }, 64 * MIB);
        assert!(v.room.pauses());
        assert_eq!(
            v.fix.as_deref(),
            Some(
                "the volume holding /data/hermes/state is 24 MiB in all, smaller than the WHATSAPP_MIN_FREE_MB \
                 reserve of 64 MiB: set WHATSAPP_MIN_FREE_MB lower (e.g. 6) and restart the gateway, or give \
                 HERMES_HOME a bigger volume"
            )
        );
        assert!(v.problem.contains("has 20 MiB free, below the 64 MiB reserve"), "{v}");
        let v = judge(dir, Space { free: 90 * MIB, total: 100 * MIB }, 64 * MIB);
        assert!(!v.room.pauses());
        assert!(v.problem.ends_with("receiving pauses once 26 MiB more is used"), "{v}");
        assert!(v.fix.is_some_and(|f| f.contains("100 MiB in all, less than twice the WHATSAPP_MIN_FREE_MB reserve")));
        let v = judge(dir, Space { free: 4 * MIB, total: 32 * MIB }, 8 * MIB);
        assert!(v.room.pauses());
        let fix = v.fix.as_deref().unwrap_or_default();
        assert!(fix.starts_with("free some space") && !fix.contains("bigger volume"), "{v}");
        let v = judge(dir, Space { free: 1000 * MIB, total: 100_000 * MIB }, 64 * MIB);
        assert_eq!((v.problem.as_str(), v.fix), ("/data/hermes/state has 1000 MiB free", None));
    }
}
