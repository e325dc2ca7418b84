//! The iterative well-formedness check.

use crate::read_head;

/// An open container while walking.
#[derive(Clone, Copy)]
enum Frame {
    /// A definite-length array, map (2 per entry) or tag (1): items still expected.
    Items(u64),
    /// An indefinite-length array or map: items until a break; for a map,
    /// `odd` is set while a key waits for its value (a break then is an
    /// error).
    Indefinite { map: bool, odd: bool },
    /// An indefinite-length byte (2) or text (3) string: definite chunks of
    /// that major type until a break.
    Chunks(u8),
}

/// Deepest nesting [`check_wellformed`] can track.
pub(crate) const MAX_DEPTH: usize = 16;

/// Is `buf` exactly one well-formed CBOR data item, with arrays, maps, tags
/// and indefinite strings nested at most `max_depth` (capped at 16) deep,
/// and every text string UTF-8? Runs in constant stack space, allocates
/// nothing, and never reads past `buf`.
pub fn check_wellformed(buf: &[u8], max_depth: usize) -> Result<(), crate::Error> {
    match item_end(buf, 0, max_depth) {
        Some(end) if end == buf.len() => Ok(()),
        _ => Err(crate::Error::Malformed),
    }
}

/// Where the one well-formed item starting at `start` ends (the position
/// after it), nesting at most `max_depth` (capped at 16) deep; `None` when
/// it is not well-formed. Also how readers skip a value.
pub(crate) fn item_end(buf: &[u8], start: usize, max_depth: usize) -> Option<usize> {
    let max_depth = max_depth.min(MAX_DEPTH);
    let mut stack = [Frame::Items(0); MAX_DEPTH];
    let mut depth = 0usize;
    let mut pos = start;
    loop {
        let top = if depth == 0 { None } else { stack.get(depth - 1).copied() };
        if *buf.get(pos)? == 0xff {
            // A break closes the innermost indefinite item, which is then complete.
            match top {
                Some(Frame::Indefinite { odd: false, .. }) | Some(Frame::Chunks(_)) => {
                    pos += 1;
                    depth -= 1;
                }
                _ => return None,
            }
        } else {
            let h = read_head(buf, pos)?;
            pos = h.next;
            if let Some(Frame::Chunks(m)) = top {
                if h.major != m || h.arg.is_none() {
                    return None;
                }
            }
            let remaining = (buf.len() - pos) as u64;
            let push = match (h.major, h.arg) {
                (0 | 1, Some(_)) => None,
                (2 | 3, Some(len)) => {
                    if len > remaining {
                        return None;
                    }
                    let end = pos + len as usize;
                    // Text must be UTF-8, each chunk of an indefinite one on
                    // its own (RFC 8949 3.2.3), wherever it is: a value under
                    // a key nobody reads is refused like ciborium refuses it.
                    if h.major == 3 && core::str::from_utf8(buf.get(pos..end)?).is_err() {
                        return None;
                    }
                    pos = end;
                    None
                }
                (2 | 3, None) => Some(Frame::Chunks(h.major)),
                // Every item needs at least one byte: refuse impossible counts early.
                (4, Some(n)) if n > remaining => return None,
                (5, Some(n)) if n > remaining / 2 => return None,
                // An empty array or map is a level of nesting too, with
                // nothing to wait for.
                (4 | 5, Some(0)) if depth >= max_depth => return None,
                (4, Some(n)) => (n > 0).then_some(Frame::Items(n)),
                (5, Some(n)) => (n > 0).then_some(Frame::Items(2 * n)),
                (4 | 5, None) => Some(Frame::Indefinite { map: h.major == 5, odd: false }),
                (6, Some(_)) => Some(Frame::Items(1)),
                // A one-byte simple value must be >= 32 (RFC 8949 3.3).
                (7, Some(v)) if h.info == 24 && v < 32 => return None,
                (7, Some(_)) => None,
                // Indefinite uint, nint or tag.
                _ => return None,
            };
            if let Some(frame) = push {
                if depth >= max_depth {
                    return None;
                }
                *stack.get_mut(depth)? = frame;
                depth += 1;
                continue;
            }
        }
        // One item is complete: count it against the enclosing containers.
        loop {
            if depth == 0 {
                return Some(pos);
            }
            match stack.get_mut(depth - 1)? {
                Frame::Items(n) => {
                    *n -= 1;
                    if *n == 0 {
                        depth -= 1;
                        continue;
                    }
                    break;
                }
                Frame::Indefinite { map, odd } => {
                    if *map {
                        *odd = !*odd;
                    }
                    break;
                }
                Frame::Chunks(_) => break,
            }
        }
    }
}
