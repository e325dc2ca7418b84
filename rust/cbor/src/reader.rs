//! Reading one top-level map.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;

use crate::wellformed::item_end;
use crate::{check_wellformed, read_head, Error};

const BREAK: u8 = 0xff;

/// Reads a CBOR map entry by entry. [`MapReader::new`] checks the whole
/// input first ([`check_wellformed`]), so the reader never meets a truncated
/// item; it still checks every type it is asked for.
///
/// ```
/// # use tfmprov_cbor::{Enc, MapReader, Error};
/// let mut e = Enc::new();
/// e.map(2).text("id").uint(7).text("x").bool(true);
/// let body = e.finish();
/// let mut r = MapReader::new(&body, 8)?;
/// let mut id = None;
/// while let Some(key) = r.next_key()? {
///     match &*key {
///         "id" => MapReader::set(&mut id, r.uint("id")?, "id")?,
///         _ => r.skip()?, // unknown keys are ignored
///     }
/// }
/// assert_eq!(id, Some(7));
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug)]
pub struct MapReader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Entries left in a definite map; `None` for an indefinite one.
    left: Option<u64>,
    max_depth: usize,
}

impl<'a> MapReader<'a> {
    /// Checks that `buf` is one well-formed item nested at most `max_depth`
    /// deep and that it is a map.
    pub fn new(buf: &'a [u8], max_depth: usize) -> Result<Self, Error> {
        check_wellformed(buf, max_depth)?;
        let head = read_head(buf, 0).ok_or(Error::Malformed)?;
        if head.major != 5 {
            return Err(Error::NotAMap);
        }
        Ok(MapReader { buf, pos: head.next, left: head.arg, max_depth })
    }

    /// The next entry's key, if any. A text key is returned as text; any
    /// other key (an integer, ...) comes back as `""`, which matches no
    /// field name, so the caller skips its value. Read or skip the value
    /// before asking for the next key.
    pub fn next_key(&mut self) -> Result<Option<Cow<'a, str>>, Error> {
        match self.left {
            Some(0) => return Ok(None),
            Some(n) => self.left = Some(n - 1),
            None => {
                if self.buf.get(self.pos) == Some(&BREAK) {
                    self.pos += 1;
                    return Ok(None);
                }
            }
        }
        let head = read_head(self.buf, self.pos).ok_or(Error::Malformed)?;
        if head.major == 3 {
            return self.text_at("key").map(Some);
        }
        self.skip()?;
        Ok(Some(Cow::Borrowed("")))
    }

    /// Records `value` in `slot`, refusing a second value for the same key.
    pub fn set<T>(slot: &mut Option<T>, value: T, key: &'static str) -> Result<(), Error> {
        match slot.replace(value) {
            None => Ok(()),
            Some(_) => Err(Error::Duplicate(key)),
        }
    }

    /// Skips the value (or key) at the current position, however nested.
    pub fn skip(&mut self) -> Result<(), Error> {
        self.pos = item_end(self.buf, self.pos, self.max_depth).ok_or(Error::Malformed)?;
        Ok(())
    }

    /// A map value, as its encoded bytes (well-formed: checked by
    /// [`MapReader::new`]), for a reader of its own.
    pub fn map_bytes(&mut self, key: &'static str) -> Result<&'a [u8], Error> {
        let head = read_head(self.buf, self.pos).ok_or(Error::Malformed)?;
        if head.major != 5 {
            return Err(Error::WrongType(key));
        }
        let start = self.pos;
        self.skip()?;
        Ok(&self.buf[start..self.pos])
    }

    /// An unsigned integer (major type 0).
    pub fn uint(&mut self, key: &'static str) -> Result<u64, Error> {
        let head = read_head(self.buf, self.pos).ok_or(Error::Malformed)?;
        match (head.major, head.arg) {
            (0, Some(v)) => {
                self.pos = head.next;
                Ok(v)
            }
            _ => Err(Error::WrongType(key)),
        }
    }

    /// Whether the value is `null`; if so it is consumed.
    pub fn null(&mut self) -> Result<bool, Error> {
        if self.buf.get(self.pos) == Some(&0xf6) {
            self.pos += 1;
            return Ok(true);
        }
        Ok(false)
    }

    /// `true` or `false`.
    pub fn bool(&mut self, key: &'static str) -> Result<bool, Error> {
        let value = match self.buf.get(self.pos) {
            Some(0xf4) => false,
            Some(0xf5) => true,
            _ => return Err(Error::WrongType(key)),
        };
        self.pos += 1;
        Ok(value)
    }

    /// A byte string (definite, or indefinite in chunks), copied.
    pub fn bytes(&mut self, key: &'static str) -> Result<Vec<u8>, Error> {
        self.string(2, key).map(Cow::into_owned)
    }

    /// A text string (definite, or indefinite in chunks) that must be UTF-8.
    pub fn text(&mut self, key: &'static str) -> Result<String, Error> {
        self.text_at(key).map(Cow::into_owned)
    }

    fn text_at(&mut self, key: &'static str) -> Result<Cow<'a, str>, Error> {
        match self.string(3, key)? {
            Cow::Borrowed(b) => core::str::from_utf8(b).map(Cow::Borrowed).map_err(|_| Error::NotUtf8),
            Cow::Owned(v) => String::from_utf8(v).map(Cow::Owned).map_err(|_| Error::NotUtf8),
        }
    }

    /// A string of major type `major` at the current position.
    fn string(&mut self, major: u8, key: &'static str) -> Result<Cow<'a, [u8]>, Error> {
        let head = read_head(self.buf, self.pos).ok_or(Error::Malformed)?;
        if head.major != major {
            return Err(Error::WrongType(key));
        }
        match head.arg {
            Some(len) => {
                let end = usize::try_from(len).ok().and_then(|l| head.next.checked_add(l)).ok_or(Error::Malformed)?;
                let bytes = self.buf.get(head.next..end).ok_or(Error::Malformed)?;
                self.pos = end;
                Ok(Cow::Borrowed(bytes))
            }
            None => {
                // Definite chunks of the same major type until a break
                // (check_wellformed has checked their shape).
                let mut out = Vec::new();
                let mut pos = head.next;
                while self.buf.get(pos) != Some(&BREAK) {
                    let chunk = read_head(self.buf, pos).ok_or(Error::Malformed)?;
                    let len = usize::try_from(chunk.arg.ok_or(Error::Malformed)?).map_err(|_| Error::Malformed)?;
                    let end = chunk.next.checked_add(len).ok_or(Error::Malformed)?;
                    out.extend_from_slice(self.buf.get(chunk.next..end).ok_or(Error::Malformed)?);
                    pos = end;
                }
                self.pos = pos + 1;
                Ok(Cow::Owned(out))
            }
        }
    }
}
