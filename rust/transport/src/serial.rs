//! SMP over a serial line: the device side on a pseudo-terminal, and the host side port.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::termios::{self, FlushArg, SetArg};
use tfmprov_smp::serial::{encode_packet, Decoder};

use crate::{Error, MAX_PACKET, STOP_POLL_INTERVAL};

/// How long the device waits for room in the PTY to write one response before dropping it
/// (nobody is reading the line).
const WRITE_GIVE_UP: Duration = Duration::from_secs(2);

/// Puts a terminal in raw mode (no echo, no line editing, no CR/LF translation).
fn make_raw(fd: impl AsFd) -> Result<(), Error> {
    let mut t = termios::tcgetattr(fd.as_fd())?;
    termios::cfmakeraw(&mut t);
    termios::tcsetattr(fd.as_fd(), SetArg::TCSANOW, &t)?;
    Ok(())
}

fn set_nonblocking(fd: impl AsFd) -> Result<(), Error> {
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Waits up to `timeout` for `fd` to be ready for `events`; `Ok(false)` on timeout.
fn wait_ready(fd: impl AsFd, events: PollFlags, timeout: Duration) -> Result<bool, Error> {
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(fd.as_fd(), events)];
    match poll(&mut fds, PollTimeout::from(ms)) {
        Ok(n) => Ok(n > 0),
        Err(nix::errno::Errno::EINTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Writes all of `data` to a non-blocking file, waiting for room; gives up (returning
/// `Ok(false)`) after `give_up` or when `stop` is set.
fn write_all_nonblocking(
    file: &mut File,
    mut data: &[u8],
    give_up: Duration,
    stop: Option<&AtomicBool>,
) -> Result<bool, Error> {
    let deadline = Instant::now() + give_up;
    while !data.is_empty() {
        match file.write(data) {
            Ok(0) => return Err(Error::Io(ErrorKind::WriteZero.into())),
            Ok(n) => data = data.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let now = Instant::now();
                if now >= deadline || stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
                    return Ok(false);
                }
                let wait = (deadline - now).min(STOP_POLL_INTERVAL);
                wait_ready(&*file, PollFlags::POLLOUT, wait)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// A simulated device's serial port: the master side of a raw-mode pseudo-terminal whose
/// slave (the "device's UART" as the host sees it) is symlinked at a chosen path.
///
/// The device keeps the slave open itself, so hosts can open and close the link any number
/// of times. Dropping the `SerialDevice` removes the link (if it still points at this PTY).
#[derive(Debug)]
pub struct SerialDevice {
    master: File,
    _slave: OwnedFd,
    slave_path: PathBuf,
    link: PathBuf,
    max_packet: usize,
}

impl SerialDevice {
    /// Creates the PTY (raw mode) and the symlink `link` -> slave path. A stale symlink at
    /// `link` is replaced; any other kind of file there is an [`Error::Link`].
    pub fn create(link: &Path) -> Result<SerialDevice, Error> {
        let pty = nix::pty::openpty(None, None)?;
        make_raw(&pty.slave)?;
        let slave_path = nix::unistd::ttyname(&pty.slave)?;
        let master = File::from(pty.master);
        set_nonblocking(&master)?;

        match std::fs::symlink_metadata(link) {
            Ok(meta) if meta.file_type().is_symlink() => std::fs::remove_file(link)?,
            Ok(_) => {
                return Err(Error::Link {
                    path: link.to_path_buf(),
                    reason: "exists and is not a symbolic link; not replacing it".into(),
                })
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        std::os::unix::fs::symlink(&slave_path, link).map_err(|e| Error::Link {
            path: link.to_path_buf(),
            reason: format!(
                "cannot create symbolic link to {}: {e}",
                slave_path.display()
            ),
        })?;
        tracing::info!(link = %link.display(), pty = %slave_path.display(), "SMP serial device ready");
        Ok(SerialDevice {
            master,
            _slave: pty.slave,
            slave_path,
            link: link.to_path_buf(),
            max_packet: MAX_PACKET,
        })
    }

    /// Sets the largest request packet accepted (default [`MAX_PACKET`]); larger ones are
    /// dropped by the frame decoder. Use the `buf_size` the device reports.
    pub fn with_max_packet(mut self, max_packet: usize) -> SerialDevice {
        self.max_packet = max_packet;
        self
    }

    /// The PTY slave device (e.g. `/dev/pts/3`).
    pub fn slave_path(&self) -> &Path {
        &self.slave_path
    }

    /// The symlink pointing at the slave.
    pub fn link(&self) -> &Path {
        &self.link
    }

    /// Serves SMP console frames until `stop` is set (checked every 100 ms). Console noise
    /// and broken frames are skipped (logged at debug level); each request packet goes to
    /// `handler`, and a returned packet is framed and written back. A response that cannot
    /// be written within 2 s (nobody reads the line) is dropped with a warning.
    pub fn serve(
        &mut self,
        stop: &AtomicBool,
        mut handler: impl FnMut(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<(), Error> {
        let mut decoder = Decoder::new(self.max_packet);
        let mut buf = [0u8; 4096];
        let mut packets = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            if !wait_ready(&self.master, PollFlags::POLLIN, STOP_POLL_INTERVAL)? {
                continue;
            }
            let n = match self.master.read(&mut buf) {
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                    continue
                }
                // EIO: no slave open. Cannot happen while we hold the slave; do not spin.
                Err(e) if e.raw_os_error() == Some(nix::libc::EIO) => {
                    std::thread::sleep(STOP_POLL_INTERVAL);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            decoder.push(buf.get(..n).unwrap_or_default(), &mut packets);
            for packet in packets.drain(..) {
                let packet = match packet {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::debug!(error = %e, "SMP serial: frame dropped");
                        continue;
                    }
                };
                let Some(rsp) = handler(&packet) else {
                    continue;
                };
                let framed = encode_packet(&rsp);
                if !write_all_nonblocking(&mut self.master, &framed, WRITE_GIVE_UP, Some(stop))? {
                    tracing::warn!("SMP serial: response dropped, nobody is reading the line");
                }
            }
        }
        Ok(())
    }
}

impl Drop for SerialDevice {
    fn drop(&mut self) {
        if std::fs::read_link(&self.link).is_ok_and(|target| target == self.slave_path) {
            if let Err(e) = std::fs::remove_file(&self.link) {
                tracing::warn!(link = %self.link.display(), error = %e, "could not remove PTY link");
            }
        }
    }
}

/// Device side: creates a pseudo-terminal (raw mode), symlinks its slave path at `link`
/// (replacing a stale link), serves SMP console frames on it until `stop` is set (checked
/// every 100 ms); removes the link at the end. Console noise is ignored.
pub fn serve_serial(
    link: &Path,
    stop: &AtomicBool,
    handler: impl FnMut(&[u8]) -> Option<Vec<u8>>,
) -> Result<(), Error> {
    SerialDevice::create(link)?.serve(stop, handler)
}

/// [`serve_serial`] that calls `ready` once the PTY and its link exist (before serving), so
/// that a caller running it in a thread can announce the link only when it can be opened.
/// `ready` is not called if the PTY or the link cannot be created.
pub fn serve_serial_ready(
    link: &Path,
    stop: &AtomicBool,
    ready: impl FnOnce(),
    handler: impl FnMut(&[u8]) -> Option<Vec<u8>>,
) -> Result<(), Error> {
    let mut device = SerialDevice::create(link)?;
    ready();
    device.serve(stop, handler)
}

/// Host side of a serial line: a raw-mode, non-blocking terminal with a frame decoder.
#[derive(Debug)]
pub(crate) struct SerialPort {
    file: File,
    decoder: Decoder,
    ready: std::collections::VecDeque<Vec<u8>>,
}

impl SerialPort {
    pub(crate) fn open(path: &Path) -> Result<SerialPort, Error> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_NOCTTY | nix::libc::O_NONBLOCK)
            .open(path)?;
        make_raw(&file)?;
        // Drop whatever was waiting on the line before we came.
        termios::tcflush(&file, FlushArg::TCIOFLUSH)?;
        Ok(SerialPort {
            file,
            decoder: Decoder::new(MAX_PACKET),
            ready: Default::default(),
        })
    }

    pub(crate) fn send(&mut self, packet: &[u8]) -> Result<(), Error> {
        let framed = encode_packet(packet);
        if write_all_nonblocking(&mut self.file, &framed, Duration::from_secs(5), None)? {
            Ok(())
        } else {
            Err(Error::Io(std::io::Error::new(
                ErrorKind::TimedOut,
                "serial line does not accept data",
            )))
        }
    }

    /// The next decoded packet, or `None` once `deadline` has passed.
    pub(crate) fn recv(&mut self, deadline: Instant) -> Result<Option<Vec<u8>>, Error> {
        let mut buf = [0u8; 4096];
        let mut out = Vec::new();
        loop {
            if let Some(p) = self.ready.pop_front() {
                return Ok(Some(p));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            if !wait_ready(&self.file, PollFlags::POLLIN, deadline - now)? {
                continue;
            }
            let n = match self.file.read(&mut buf) {
                Ok(0) => {
                    return Err(Error::Io(std::io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "serial line closed",
                    )))
                }
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                    continue
                }
                Err(e) => return Err(e.into()),
            };
            self.decoder
                .push(buf.get(..n).unwrap_or_default(), &mut out);
            for item in out.drain(..) {
                match item {
                    Ok(p) => self.ready.push_back(p),
                    Err(e) => tracing::debug!(error = %e, "SMP serial: response frame dropped"),
                }
            }
        }
    }
}
