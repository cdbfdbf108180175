//! The reading end of a plugin's channel, for whichever thread holds it: takes the bytes that
//! are ready without blocking, and sleeps in poll(2) until bytes arrive, a deadline passes or
//! another thread wakes it. Also the permits for spinning, so that a host thread waiting for a
//! quick answer can keep polling instead of sleeping without taking every CPU.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::protocol::{Line, LineFramer};

/// How many bytes one read takes at most.
const READ_CHUNK: usize = 64 << 10;

pub(crate) struct ReadSide {
    stream: UnixStream,
    framer: LineFramer,
    chunk: Vec<u8>,
}

/// What a read without waiting found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Bytes (the lines they completed are in the output).
    Bytes,
    /// Nothing yet.
    Nothing,
    /// The peer closed its end (a last line without a newline is in the output).
    End,
}

/// Why [`ReadSide::wait`] returned.
#[derive(Debug, Default)]
pub(crate) struct Woken {
    pub readable: bool,
    /// The wake-up stream had bytes or was closed.
    pub by_other_thread: bool,
}

impl ReadSide {
    pub fn new(stream: UnixStream, cap: usize) -> ReadSide {
        ReadSide {
            stream,
            framer: LineFramer::new(cap),
            chunk: vec![0; READ_CHUNK],
        }
    }

    /// Reads what is ready now, adding the lines it completes to `out`.
    pub fn take_ready(&mut self, out: &mut Vec<Line>) -> Taken {
        let mut taken = Taken::Nothing;
        loop {
            match recv_ready(self.stream.as_raw_fd(), &mut self.chunk) {
                Ok(0) => {
                    out.extend(self.framer.end());
                    return Taken::End;
                }
                Ok(n) => {
                    self.framer.push(&self.chunk[..n], out);
                    taken = Taken::Bytes;
                    if n < self.chunk.len() {
                        return taken;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return taken,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    out.extend(self.framer.end());
                    return Taken::End;
                }
            }
        }
    }

    /// Sleeps until the channel is readable, `until` passes, or `wake` has bytes (or closes).
    pub fn wait(&self, until: Option<Instant>, wake: Option<&UnixStream>) -> Woken {
        let mut fds = vec![libc::pollfd {
            fd: self.stream.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if let Some(w) = wake {
            fds.push(libc::pollfd {
                fd: w.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        loop {
            let timeout = match until {
                None => -1,
                Some(t) => {
                    let left = t.saturating_duration_since(Instant::now());
                    // Rounded up: waking a little late beats spinning on a deadline not reached.
                    left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
                }
            };
            // SAFETY: `fds` is a live array of `fds.len()` pollfd structures.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // A failed poll reports the channel readable: the read that follows says why.
            return Woken {
                readable: n < 0 || fds[0].revents != 0,
                by_other_thread: fds.get(1).is_some_and(|f| f.revents != 0),
            };
        }
    }
}

/// Empties a wake-up stream; false when its other end is gone.
pub(crate) fn drain(wake: &UnixStream) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match recv_ready(wake.as_raw_fd(), &mut buf) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return e.kind() == io::ErrorKind::WouldBlock,
        }
    }
}

/// One read of what is ready, without blocking, whatever the descriptor's own mode (the
/// writing half shares it and must block).
fn recv_ready(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes for the duration of the call.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Leave to spin while waiting for an answer. At most one thread fewer than the CPUs spins at
/// a time, so a plugin always has a CPU to answer on; on one CPU nobody spins.
pub(crate) struct SpinPermit(());

static SPINNING: AtomicUsize = AtomicUsize::new(0);

fn most_spinning() -> usize {
    static MOST: OnceLock<usize> = OnceLock::new();
    *MOST.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get() - 1)
            .unwrap_or(0)
    })
}

impl SpinPermit {
    pub fn take() -> Option<SpinPermit> {
        let most = most_spinning();
        SPINNING
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < most).then_some(n + 1)
            })
            .ok()
            .map(|_| SpinPermit(()))
    }
}

impl Drop for SpinPermit {
    fn drop(&mut self) {
        SPINNING.fetch_sub(1, Ordering::AcqRel);
    }
}
