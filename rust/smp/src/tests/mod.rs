//! Unit tests, one module per topic.
mod body;
mod header;
mod os;
mod packet;
mod serial;

/// A tiny CBOR writer for building test inputs by hand (independent of ciborium's encoder).
pub(crate) mod cbor {
    pub fn head(major: u8, v: u64) -> Vec<u8> {
        let m = major << 5;
        match v {
            0..=23 => vec![m | v as u8],
            24..=0xff => vec![m | 24, v as u8],
            0x100..=0xffff => {
                let mut o = vec![m | 25];
                o.extend_from_slice(&(v as u16).to_be_bytes());
                o
            }
            0x1_0000..=0xffff_ffff => {
                let mut o = vec![m | 26];
                o.extend_from_slice(&(v as u32).to_be_bytes());
                o
            }
            _ => {
                let mut o = vec![m | 27];
                o.extend_from_slice(&v.to_be_bytes());
                o
            }
        }
    }
    pub fn uint(v: u64) -> Vec<u8> {
        head(0, v)
    }
    pub fn text(s: &str) -> Vec<u8> {
        let mut o = head(3, s.len() as u64);
        o.extend_from_slice(s.as_bytes());
        o
    }
    pub fn bytes(b: &[u8]) -> Vec<u8> {
        let mut o = head(2, b.len() as u64);
        o.extend_from_slice(b);
        o
    }
    /// A map from already encoded (key, value) pairs with text keys.
    pub fn map(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut o = head(5, entries.len() as u64);
        for (k, v) in entries {
            o.extend(text(k));
            o.extend_from_slice(v);
        }
        o
    }
    pub const TRUE: u8 = 0xf5;
    pub const FALSE: u8 = 0xf4;
}
