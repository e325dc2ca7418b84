//! Bounded CBOR decoding and a tiny infallible encoder.
//!
//! [`check_wellformed`] walks untrusted bytes iteratively (no recursion, no
//! allocation) and refuses truncated items, lengths larger than what is left,
//! trailing bytes and nesting deeper than a limit. Only input that passed it
//! is handed to `ciborium`, so `ciborium`'s recursion and allocations are
//! bounded by the input itself.

use alloc::vec::Vec;
use ciborium::value::Value;

use crate::MAX_CBOR_DEPTH;

#[derive(Clone, Copy)]
enum Frame {
    /// A definite-length array, map (2 per entry) or tag (1): items still expected.
    Items(u64),
    /// An indefinite-length array or map: items until a break.
    Indefinite,
    /// An indefinite-length byte (2) or text (3) string: definite chunks of
    /// that major type until a break.
    Chunks(u8),
}

/// Is `buf` exactly one well-formed CBOR data item nested at most `max_depth` deep?
pub(crate) fn check_wellformed(buf: &[u8], max_depth: usize) -> Result<(), ()> {
    let mut stack = [Frame::Indefinite; MAX_CBOR_DEPTH];
    let max_depth = max_depth.min(MAX_CBOR_DEPTH);
    let mut depth = 0usize;
    let mut pos = 0usize;
    loop {
        let ib = *buf.get(pos).ok_or(())?;
        pos += 1;
        let top = if depth == 0 {
            None
        } else {
            stack.get(depth - 1).copied()
        };

        // A break closes the innermost indefinite item, which is then complete.
        if ib == 0xff {
            match top {
                Some(Frame::Indefinite) | Some(Frame::Chunks(_)) => {
                    depth -= 1;
                }
                _ => return Err(()),
            }
        } else {
            let major = ib >> 5;
            let ai = ib & 0x1f;
            let arg: Option<u64> = match ai {
                0..=23 => Some(u64::from(ai)),
                24..=27 => {
                    let n = 1usize << (ai - 24);
                    let bytes = buf.get(pos..pos.checked_add(n).ok_or(())?).ok_or(())?;
                    pos += n;
                    Some(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
                }
                28..=30 => return Err(()),
                _ => None, // 31: indefinite length (or break, handled above)
            };
            if let Some(Frame::Chunks(m)) = top {
                if major != m || arg.is_none() {
                    return Err(());
                }
            }
            let remaining = (buf.len() - pos) as u64;
            let mut push: Option<Frame> = None;
            match (major, arg) {
                (0 | 1, Some(_)) => {}
                (2 | 3, Some(len)) => {
                    if len > remaining {
                        return Err(());
                    }
                    pos += len as usize;
                }
                (2 | 3, None) => push = Some(Frame::Chunks(major)),
                (4, Some(n)) => {
                    if n > remaining {
                        return Err(());
                    }
                    if n > 0 {
                        push = Some(Frame::Items(n));
                    }
                }
                (5, Some(n)) => {
                    if n > remaining / 2 {
                        return Err(());
                    }
                    if n > 0 {
                        push = Some(Frame::Items(2 * n));
                    }
                }
                (4 | 5, None) => push = Some(Frame::Indefinite),
                (6, Some(_)) => push = Some(Frame::Items(1)),
                (7, Some(_)) => {
                    // simple values and floats; the 1-byte simple form must be >= 32
                    if ai == 24 && buf.get(pos - 1).copied().unwrap_or(0) < 32 {
                        return Err(());
                    }
                }
                _ => return Err(()),
            }
            if let Some(frame) = push {
                if depth >= max_depth {
                    return Err(());
                }
                *stack.get_mut(depth).ok_or(())? = frame;
                depth += 1;
                continue;
            }
        }

        // One item is complete: count it against the enclosing containers.
        loop {
            if depth == 0 {
                return if pos == buf.len() { Ok(()) } else { Err(()) };
            }
            let slot = stack.get_mut(depth - 1).ok_or(())?;
            match slot {
                Frame::Items(n) => {
                    *n -= 1;
                    if *n == 0 {
                        depth -= 1;
                        continue;
                    }
                    break;
                }
                Frame::Indefinite | Frame::Chunks(_) => break,
            }
        }
    }
}

/// Decode untrusted bytes into a [`Value`] after [`check_wellformed`].
pub(crate) fn decode(buf: &[u8], max_depth: usize) -> Result<Value, ()> {
    check_wellformed(buf, max_depth)?;
    // A small scratch buffer: byte strings longer than it are read in chunks.
    let mut scratch = [0u8; 128];
    ciborium::de::from_reader_with_buffer(buf, &mut scratch).map_err(|_| ())
}

/// Minimal deterministic CBOR encoder for the few structures we write by hand
/// (KDF context, errors body). Writing into a `Vec` cannot fail.
pub(crate) struct Enc(pub Vec<u8>);

impl Enc {
    pub fn new() -> Self {
        Enc(Vec::new())
    }
    fn head(&mut self, major: u8, v: u64) {
        let m = major << 5;
        if v < 24 {
            self.0.push(m | v as u8);
        } else if v <= 0xff {
            self.0.push(m | 24);
            self.0.push(v as u8);
        } else if v <= 0xffff {
            self.0.push(m | 25);
            self.0.extend_from_slice(&(v as u16).to_be_bytes());
        } else if v <= 0xffff_ffff {
            self.0.push(m | 26);
            self.0.extend_from_slice(&(v as u32).to_be_bytes());
        } else {
            self.0.push(m | 27);
            self.0.extend_from_slice(&v.to_be_bytes());
        }
    }
    pub fn uint(&mut self, v: u64) -> &mut Self {
        self.head(0, v);
        self
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.head(2, b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    pub fn text(&mut self, t: &str) -> &mut Self {
        self.head(3, t.len() as u64);
        self.0.extend_from_slice(t.as_bytes());
        self
    }
    pub fn array(&mut self, n: u64) -> &mut Self {
        self.head(4, n);
        self
    }
    pub fn map(&mut self, n: u64) -> &mut Self {
        self.head(5, n);
        self
    }
    pub fn null(&mut self) -> &mut Self {
        self.0.push(0xf6);
        self
    }
    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// Overwrite secret bytes with zeros in a way the optimizer keeps.
pub(crate) fn wipe(buf: &mut [u8]) {
    for b in buf.iter_mut() {
        // SAFETY: `b` is a valid, aligned, exclusive reference to a u8.
        unsafe { core::ptr::write_volatile(b as *mut u8, 0) };
    }
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
}

#[cfg(test)]
mod tests;
