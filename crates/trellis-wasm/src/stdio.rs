//! Guest stdout/stderr: captured in memory, bounded, never failing the guest.
//!
//! Unlike wasmtime-wasi's `MemoryOutputPipe`, which traps the guest once full, this pipe keeps
//! accepting writes and keeps only the last bytes (where a panic message is).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

#[derive(Clone, Debug)]
pub(crate) struct CapturePipe {
    inner: Arc<Mutex<Captured>>,
    /// Whether anything was written since the last `clear`. The host looks at both pipes
    /// around every call and almost every call prints nothing: this spares it the locks.
    written: Arc<AtomicBool>,
}

#[derive(Debug, Default)]
struct Captured {
    capacity: usize,
    bytes: Vec<u8>,
    dropped: u64,
}

impl Captured {
    fn push(&mut self, data: &[u8]) {
        if data.len() >= self.capacity {
            self.dropped += (self.bytes.len() + data.len() - self.capacity) as u64;
            self.bytes.clear();
            self.bytes
                .extend_from_slice(&data[data.len() - self.capacity..]);
            return;
        }
        let overflow = (self.bytes.len() + data.len()).saturating_sub(self.capacity);
        if overflow > 0 {
            self.bytes.drain(..overflow);
            self.dropped += overflow as u64;
        }
        self.bytes.extend_from_slice(data);
    }
}

impl CapturePipe {
    pub(crate) fn new(capacity: usize) -> Self {
        CapturePipe {
            inner: Arc::new(Mutex::new(Captured {
                capacity,
                ..Captured::default()
            })),
            written: Arc::new(AtomicBool::new(false)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Captured> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn clear(&self) {
        if !self.written.load(Ordering::Acquire) {
            return;
        }
        let mut c = self.lock();
        // Under the lock, as in `write`, so a write cannot fall between flag and bytes.
        self.written.store(false, Ordering::Release);
        c.bytes.clear();
        c.dropped = 0;
    }

    /// What was written since the last `clear` (the last `capacity` bytes of it), as text.
    pub(crate) fn text(&self) -> String {
        if !self.written.load(Ordering::Acquire) {
            return String::new();
        }
        let c = self.lock();
        let text = String::from_utf8_lossy(&c.bytes).into_owned();
        if c.dropped > 0 {
            format!("[{} earlier bytes dropped]\n{text}", c.dropped)
        } else {
            text
        }
    }

    pub(crate) fn write(&self, data: &[u8]) {
        let mut c = self.lock();
        c.push(data);
        self.written.store(true, Ordering::Release);
    }
}

impl IsTerminal for CapturePipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturePipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CapturePipe {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        CapturePipe::write(self, &bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturePipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CapturePipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        CapturePipe::write(&self, buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The panic message in a Rust guest's stderr (`panicked at src/lib.rs:3:5:\nboom`), if any.
pub(crate) fn panic_message(stderr: &str) -> Option<String> {
    let start = stderr.rfind("panicked at ")?;
    let after = &stderr[start + "panicked at ".len()..];
    // Since Rust 1.73: `panicked at <location>:\n<message>`; before: `panicked at '<msg>', loc`.
    let (location, rest) = match after.split_once(":\n") {
        Some((loc, rest)) if !loc.contains('\n') => (Some(loc.trim()), rest),
        _ => (None, after),
    };
    let message: Vec<&str> = rest
        .lines()
        .take_while(|l| !l.starts_with("note: ") && !l.starts_with("stack backtrace"))
        .collect();
    let message = message.join("\n").trim().to_owned();
    if message.is_empty() {
        return None;
    }
    Some(match location {
        Some(loc) => format!("{message} (at {loc})"),
        None => message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_tail() {
        let p = CapturePipe::new(8);
        p.write(b"abc");
        p.write(b"defgh");
        assert_eq!(p.text(), "abcdefgh");
        p.write(b"ij");
        assert_eq!(p.text(), "[2 earlier bytes dropped]\ncdefghij");
        p.write(b"0123456789");
        assert_eq!(p.text(), "[12 earlier bytes dropped]\n23456789");
        p.clear();
        assert_eq!(p.text(), "");
    }

    #[test]
    fn panic_messages() {
        let modern = "some output\nthread '<unnamed>' panicked at src/lib.rs:42:9:\nthe plugin is broken\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            panic_message(modern).as_deref(),
            Some("the plugin is broken (at src/lib.rs:42:9)")
        );
        let old = "thread 'main' panicked at 'boom', src/main.rs:2:5\nnote: run with ...";
        assert_eq!(
            panic_message(old).as_deref(),
            Some("'boom', src/main.rs:2:5")
        );
        assert_eq!(panic_message("memory allocation of 10 bytes failed"), None);
    }
}
