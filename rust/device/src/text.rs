//! Text for the shell and the log without `core::fmt`: the firmware's
//! footprint budget leaves no room for the formatting machinery (about
//! 6 KiB with the `Display` impls it drags in; docs/firmware.md,
//! "Footprint"), and every line the device prints is a few fixed words,
//! IDs in hex, decimal counts and hex dumps.

use alloc::string::String;

/// A growing line of text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Text(String);

const HEX: &[u8; 16] = b"0123456789abcdef";

impl Text {
    /// Empty text.
    pub fn new() -> Self {
        Text(String::new())
    }

    /// Appends `s`.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.0.push_str(s);
        self
    }

    /// Appends `s` and spaces up to `width` characters.
    pub fn padded(&mut self, s: &str, width: usize) -> &mut Self {
        self.0.push_str(s);
        for _ in s.chars().count()..width {
            self.0.push(' ');
        }
        self
    }

    /// Appends `0x` and eight hex digits (C's `0x%08x`): key IDs.
    pub fn id(&mut self, v: u32) -> &mut Self {
        self.0.push_str("0x");
        for shift in (0..8).rev() {
            self.0.push(char::from(HEX[(v >> (shift * 4)) as usize & 0xf]));
        }
        self
    }

    /// Appends `v` in decimal.
    pub fn dec(&mut self, v: u64) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut n = v;
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for d in &digits[i..] {
            self.0.push(char::from(*d));
        }
        self
    }

    /// Appends `v` in decimal with a sign.
    pub fn signed(&mut self, v: i64) -> &mut Self {
        if v < 0 {
            self.0.push('-');
        }
        self.dec(v.unsigned_abs())
    }

    /// Appends the lower-case hex of `bytes`.
    pub fn hex(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.reserve(bytes.len() * 2);
        for b in bytes {
            self.0.push(char::from(HEX[usize::from(b >> 4)]));
            self.0.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        self
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::format;

    #[test]
    fn matches_core_fmt() {
        for v in [0u32, 1, 0x10000, 0x3F00_0001, u32::MAX] {
            assert_eq!(Text::new().id(v).as_str(), format!("0x{v:08x}"));
        }
        for v in [0u64, 9, 10, 12345, u64::MAX] {
            assert_eq!(Text::new().dec(v).as_str(), format!("{v}"));
        }
        for v in [0i64, -1, i64::MIN, i64::MAX] {
            assert_eq!(Text::new().signed(v).as_str(), format!("{v}"));
        }
        assert_eq!(Text::new().hex(&[0, 0xab, 0x7f]).as_str(), "00ab7f");
        assert_eq!(Text::new().padded("known", 8).str("|").as_str(), format!("{:8}|", "known"));
    }
}
