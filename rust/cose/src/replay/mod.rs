//! Sliding anti-replay window (RFC 4303 section 3.4.3 style), one per
//! (device, key id) on the server. Pure logic: the caller checks, verifies
//! the message, and only then accepts. The window is a fast path, exact
//! inside its width; below it, only the server's store can tell.

/// Width of the window: a `seq` up to 127 below the highest accepted one is
/// still accepted once.
pub const REPLAY_WINDOW_BITS: u64 = 128;

/// What the window can say against a `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replay {
    /// This `seq` was already accepted.
    Duplicate,
    /// This `seq` is [`REPLAY_WINDOW_BITS`] or more below the highest
    /// accepted one: the window no longer knows whether it was seen. This is
    /// *not* a replay verdict; the server asks its store (where
    /// `(device, kid, seq)` is unique) before refusing anything.
    BelowWindow,
}

/// The window: the highest accepted `seq` and a bitmap of the 128 values at
/// and below it (bit i = `highest - i` was accepted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    highest: Option<u64>,
    bitmap: u128,
}

impl ReplayWindow {
    /// An empty window: any `seq` (including 0) is accepted first.
    pub const fn new() -> Self {
        ReplayWindow {
            highest: None,
            bitmap: 0,
        }
    }

    /// Rebuild a window from [`ReplayWindow::highest`] and [`ReplayWindow::bitmap`]
    /// (for persisting it). Bits for values below 0 are cleared and bit 0
    /// (`highest` itself) is set.
    pub fn from_parts(highest: Option<u64>, bitmap: u128) -> Self {
        match highest {
            None => ReplayWindow::new(),
            Some(h) => {
                let valid = if h >= REPLAY_WINDOW_BITS - 1 {
                    u128::MAX
                } else {
                    (2u128 << h) - 1
                };
                ReplayWindow {
                    highest: Some(h),
                    bitmap: (bitmap & valid) | 1,
                }
            }
        }
    }

    /// The highest accepted `seq`, if any.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// The bitmap (bit i = `highest - i` accepted).
    pub fn bitmap(&self) -> u128 {
        self.bitmap
    }

    /// Would `seq` be accepted? Does not change the window.
    pub fn check(&self, seq: u64) -> Result<(), Replay> {
        let Some(h) = self.highest else { return Ok(()) };
        if seq > h {
            return Ok(());
        }
        let off = h - seq;
        if off >= REPLAY_WINDOW_BITS {
            return Err(Replay::BelowWindow);
        }
        if self.bitmap & (1u128 << off) != 0 {
            Err(Replay::Duplicate)
        } else {
            Ok(())
        }
    }

    /// Record `seq` as seen (call after [`ReplayWindow::check`] passed and the
    /// message was authenticated). A `seq` that is too old is ignored.
    pub fn accept(&mut self, seq: u64) {
        match self.highest {
            None => {
                self.highest = Some(seq);
                self.bitmap = 1;
            }
            Some(h) if seq > h => {
                let shift = seq - h;
                self.bitmap = if shift >= REPLAY_WINDOW_BITS {
                    0
                } else {
                    self.bitmap << shift
                };
                self.bitmap |= 1;
                self.highest = Some(seq);
            }
            Some(h) => {
                let off = h - seq;
                if off < REPLAY_WINDOW_BITS {
                    self.bitmap |= 1u128 << off;
                }
            }
        }
    }

    /// [`ReplayWindow::check`] then [`ReplayWindow::accept`].
    pub fn check_and_accept(&mut self, seq: u64) -> Result<(), Replay> {
        self.check(seq)?;
        self.accept(seq);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
