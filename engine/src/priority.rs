//! Thread priorities: the data path (the source tasks, which decode and publish, and the
//! pipeline thread) runs at the default priority; background threads (columnarize, sinks, the
//! HTTP server) and the in-process simulator run at a lower one, so that on a machine with few cores a batch being finished,
//! compressed or queried never sits in front of a tick waiting to be published. Measured by
//! `perf/compare.sh` (perf/RESULTS.md, "Thread priorities").

/// The nice value of background threads (columnarize, sinks, HTTP).
pub const BACKGROUND: i32 = 10;
/// The nice value of the in-process simulator's threads: it stands in for an exchange on
/// another machine, so it takes only what the engine leaves.
pub const SIMULATOR: i32 = 19;

/// Sets the calling thread's nice value (Linux: per thread). Raising it (lowering the
/// priority) needs no privilege. Returns the error where the OS refuses.
#[allow(unsafe_code)]
pub fn set_current_thread_nice(nice: i32) -> std::io::Result<()> {
    // SAFETY: gettid(2) has no preconditions and cannot fail; setpriority(2) only reads its
    // three integer arguments (PRIO_PROCESS with a thread id addresses that one thread on
    // Linux) and reports failure through its return value and errno, read right after.
    let rc = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// [`set_current_thread_nice`], where a refusal is reported once on stderr and otherwise
/// ignored: a thread at the default priority still works.
pub fn lower_current_thread(nice: i32) {
    if let Err(e) = set_current_thread_nice(nice) {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            eprintln!("tickwire: cannot lower a thread's priority to nice {nice}: {e}")
        });
    }
}

/// The calling thread's nice value.
#[allow(unsafe_code)]
pub fn current_thread_nice() -> std::io::Result<i32> {
    // SAFETY: as above; getpriority(2) returns the nice value, and -1 is both a valid value
    // and the error return, so errno is cleared before and checked after, as the man page
    // prescribes.
    unsafe {
        *libc::__errno_location() = 0;
        let n = libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t);
        let errno = *libc::__errno_location();
        if n == -1 && errno != 0 {
            Err(std::io::Error::from_raw_os_error(errno))
        } else {
            Ok(n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_lowers_its_own_priority_and_no_other() {
        let before = current_thread_nice().expect("getpriority");
        let target = (before + 3).min(19);
        let seen = std::thread::spawn(move || {
            set_current_thread_nice(target).expect("setpriority");
            current_thread_nice().expect("getpriority")
        })
        .join()
        .expect("thread");
        assert_eq!(seen, target);
        assert_eq!(current_thread_nice().expect("getpriority"), before);
    }
}
