//! Reading a well-formed item piece by piece, for parsers of fixed
//! structures (COSE arrays and their header maps) that do not want a
//! decoded value tree: no allocation, no recursion, byte strings borrowed.

use crate::wellformed::item_end;
use crate::{check_wellformed, read_head, Error};

/// A position in one well-formed CBOR item. [`Cursor::new`] checks the
/// whole input first ([`check_wellformed`]); every read still checks the
/// type it expects. Definite lengths only: an indefinite-length array, map
/// or string is [`Error::WrongType`] (the profiles this serves never
/// produce one).
#[derive(Clone, Debug)]
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    max_depth: usize,
}

/// What an integer-or-text map key was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Label<'a> {
    /// An integer key (major type 0 or 1), if it fits i64.
    Int(i64),
    /// Any other key (text, or an integer outside i64): never a known label.
    Other(&'a [u8]),
}

impl<'a> Cursor<'a> {
    /// Checks that `buf` is exactly one well-formed item nested at most
    /// `max_depth` deep.
    pub fn new(buf: &'a [u8], max_depth: usize) -> Result<Self, Error> {
        check_wellformed(buf, max_depth)?;
        Ok(Cursor { buf, pos: 0, max_depth })
    }

    /// Whether everything has been read.
    pub fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn head(&mut self, major: u8, what: &'static str) -> Result<u64, Error> {
        let h = read_head(self.buf, self.pos).ok_or(Error::Malformed)?;
        match h.arg {
            Some(arg) if h.major == major => {
                self.pos = h.next;
                Ok(arg)
            }
            _ => Err(Error::WrongType(what)),
        }
    }

    /// A tag number, if the next item is tagged (consumed), else `None`.
    pub fn tag(&mut self) -> Result<Option<u64>, Error> {
        let h = read_head(self.buf, self.pos).ok_or(Error::Malformed)?;
        if h.major != 6 {
            return Ok(None);
        }
        self.pos = h.next;
        Ok(h.arg)
    }

    /// An array head: its number of items.
    pub fn array(&mut self, what: &'static str) -> Result<u64, Error> {
        self.head(4, what)
    }

    /// A map head: its number of entries.
    pub fn map(&mut self, what: &'static str) -> Result<u64, Error> {
        self.head(5, what)
    }

    /// A byte string, borrowed.
    pub fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], Error> {
        let len = self.head(2, what)?;
        let end = usize::try_from(len).ok().and_then(|l| self.pos.checked_add(l)).ok_or(Error::Malformed)?;
        let b = self.buf.get(self.pos..end).ok_or(Error::Malformed)?;
        self.pos = end;
        Ok(b)
    }

    /// `null` (consumed, `true`) or anything else (left, `false`).
    pub fn null(&mut self) -> bool {
        if self.buf.get(self.pos) == Some(&0xf6) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// An integer that fits i64.
    pub fn int(&mut self, what: &'static str) -> Result<i64, Error> {
        let h = read_head(self.buf, self.pos).ok_or(Error::Malformed)?;
        let v = match (h.major, h.arg) {
            (0, Some(a)) => i64::try_from(a).map_err(|_| Error::WrongType(what))?,
            (1, Some(a)) => i64::try_from(a).map(|a| -1 - a).map_err(|_| Error::WrongType(what))?,
            _ => return Err(Error::WrongType(what)),
        };
        self.pos = h.next;
        Ok(v)
    }

    /// A map key: an integer label or something else (its encoded bytes).
    pub fn label(&mut self) -> Result<Label<'a>, Error> {
        let start = self.pos;
        if let Ok(i) = self.int("label") {
            return Ok(Label::Int(i));
        }
        self.skip()?;
        Ok(Label::Other(&self.buf[start..self.pos]))
    }

    /// The next item, whatever it is, as its encoded bytes (consumed).
    pub fn raw(&mut self) -> Result<&'a [u8], Error> {
        let start = self.pos;
        self.skip()?;
        Ok(&self.buf[start..self.pos])
    }

    /// Skip the next item.
    pub fn skip(&mut self) -> Result<(), Error> {
        self.pos = item_end(self.buf, self.pos, self.max_depth).ok_or(Error::Malformed)?;
        Ok(())
    }
}
