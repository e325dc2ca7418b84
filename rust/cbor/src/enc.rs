//! Deterministic CBOR writer.

use alloc::vec::Vec;

/// Minimal deterministic CBOR encoder (RFC 8949 section 4.2.1 preferred
/// serialisation: shortest argument, definite lengths). The caller writes
/// heads and contents in order; writing into a `Vec` cannot fail.
#[derive(Clone, Debug, Default)]
pub struct Enc(Vec<u8>);

impl Enc {
    /// An empty encoder.
    pub fn new() -> Self {
        Enc(Vec::new())
    }

    /// An empty encoder with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Enc(Vec::with_capacity(n))
    }

    fn head(&mut self, major: u8, v: u64) {
        let m = major << 5;
        if v < 24 {
            self.0.push(m | v as u8);
        } else if v <= 0xff {
            self.0.extend_from_slice(&[m | 24, v as u8]);
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

    /// An unsigned integer (major type 0).
    pub fn uint(&mut self, v: u64) -> &mut Self {
        self.head(0, v);
        self
    }

    /// A signed integer (major type 0 or 1).
    pub fn int(&mut self, v: i64) -> &mut Self {
        if v >= 0 {
            self.head(0, v as u64);
        } else {
            // -1 - v without overflow: !v is -1 - v in two's complement.
            self.head(1, !v as u64);
        }
        self
    }

    /// A byte string.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.head(2, b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }

    /// A text string.
    pub fn text(&mut self, t: &str) -> &mut Self {
        self.head(3, t.len() as u64);
        self.0.extend_from_slice(t.as_bytes());
        self
    }

    /// The head of an array of `n` items (write them next).
    pub fn array(&mut self, n: u64) -> &mut Self {
        self.head(4, n);
        self
    }

    /// The head of a map of `n` entries (write key, value, ... next).
    pub fn map(&mut self, n: u64) -> &mut Self {
        self.head(5, n);
        self
    }

    /// A tag (write the tagged item next).
    pub fn tag(&mut self, t: u64) -> &mut Self {
        self.head(6, t);
        self
    }

    /// `true` or `false`.
    pub fn bool(&mut self, b: bool) -> &mut Self {
        self.0.push(if b { 0xf5 } else { 0xf4 });
        self
    }

    /// `null`.
    pub fn null(&mut self) -> &mut Self {
        self.0.push(0xf6);
        self
    }

    /// One already-encoded item (a nested map, say), appended as is.
    pub fn raw(&mut self, item: &[u8]) -> &mut Self {
        self.0.extend_from_slice(item);
        self
    }

    /// The bytes written.
    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}
