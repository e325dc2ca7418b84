//! The `prov` shell commands, parsed and run here so that the Zephyr shell
//! glue only forwards argv and prints the text that comes back.
//!
//! ```text
//! prov keys gen [ID|auto] [--priv HEX64] [--replace]
//! prov keys pub ID | prov keys status ID | prov keys destroy ID
//! prov csr ID CN [O [OU]]          (prints the CSR as PEM)
//! prov cert get ID                 (prints PEM)
//! prov cert store ID BASE64-DER
//! prov factory                     (the sample set, with the sample-only known values)
//! prov audit [FROM]                (the audit log of key operations, from sequence number FROM)
//! ```
//! IDs are decimal or 0x-hex.

use crate::text::Text;
use crate::{certs, csr, factory, Device, Error};
use alloc::string::String;
use alloc::vec::Vec;
use tfmprov_psa::ids::{CertTarget, DeviceKeyId};
use tfmprov_psa::KeyOrigin;

/// Usage text printed for a malformed command.
pub const USAGE: &str = "usage: prov keys gen [ID|auto] [--priv HEX] [--replace] | prov keys pub|status|destroy ID | \
prov csr ID CN [O [OU]] | prov cert get ID | prov cert store ID BASE64-DER | prov factory | prov audit [FROM]";

/// Parses a decimal or 0x-prefixed hexadecimal ID (up to 64 bits, so that the
/// range check, not the parser, refuses big values).
pub fn parse_id(s: &str) -> Result<u64, Error> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse::<u64>(),
    };
    parsed.map_err(|_| Error::InvalidArgument("ID must be decimal or 0x-hex"))
}

fn parse_hex32(s: &str) -> Result<[u8; 32], Error> {
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return Err(Error::InvalidArgument("--priv takes exactly 64 hex digits"));
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let hi = (pair[0] as char).to_digit(16);
        let lo = (pair[1] as char).to_digit(16);
        match (hi, lo) {
            (Some(h), Some(l)) => *o = (h * 16 + l) as u8,
            _ => return Err(Error::InvalidArgument("--priv is not hex")),
        }
    }
    Ok(out)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut t = Text::new();
    t.hex(bytes);
    t.into_string()
}

/// `id 0x%08x pub <hex>`.
fn key_line(id: DeviceKeyId, public: &[u8]) -> String {
    let mut t = Text::new();
    t.str("id ").id(id.get()).str(" pub ").hex(public);
    t.into_string()
}

fn key_arg(args: &[&str], i: usize) -> Result<DeviceKeyId, Error> {
    let raw = args.get(i).ok_or(Error::InvalidArgument(USAGE))?;
    Ok(DeviceKeyId::new(parse_id(raw)?)?)
}

impl Device {
    /// Runs one `prov` shell command (`args` with or without the leading
    /// "prov") and returns the text to print.
    pub fn shell(&mut self, args: &[&str]) -> Result<String, Error> {
        let args = match args.first() {
            Some(&"prov") => &args[1..],
            _ => args,
        };
        match args {
            ["keys", "gen", rest @ ..] => self.shell_keys_gen(rest),
            ["keys", "pub", _] => {
                let id = key_arg(args, 2)?;
                Ok(key_line(id, &self.psa.public_key(id)?))
            }
            ["keys", "status", _] => {
                let id = key_arg(args, 2)?;
                let present = self.psa.key_present(id)?;
                let mut t = Text::new();
                t.str("id ").id(id.get()).str(if present { " present" } else { " absent" });
                Ok(t.into_string())
            }
            ["keys", "destroy", _] => {
                let id = key_arg(args, 2)?;
                self.destroy_key_and_cert(id)?;
                let mut t = Text::new();
                t.str("id ").id(id.get()).str(" destroyed");
                Ok(t.into_string())
            }
            ["csr", _, cn, rest @ ..] if rest.len() <= 2 => {
                let id = key_arg(args, 1)?;
                let subject = csr::Subject { cn, o: rest.first().copied(), ou: rest.get(1).copied() };
                csr::to_pem("CERTIFICATE REQUEST", &self.create_csr(id, &subject)?)
            }
            ["cert", "get", id] => {
                let target = CertTarget::new(parse_id(id)?)?;
                let der = certs::get(&self.psa, target)?;
                csr::to_pem("CERTIFICATE", &der)
            }
            ["cert", "store", id, b64] => {
                let target = CertTarget::new(parse_id(id)?)?;
                let der: Vec<u8> = <base64ct::Base64 as base64ct::Encoding>::decode_vec(b64)
                    .map_err(|_| Error::InvalidArgument("certificate must be base64 DER"))?;
                self.store_certificate(target, &der)?;
                let mut t = Text::new();
                t.str("stored ").dec(der.len() as u64).str(" bytes at ").id(target.slot().get());
                Ok(t.into_string())
            }
            ["factory"] => {
                let set = factory::provision_sample_set(self, &factory::SAMPLE_VALUE_2, &factory::SAMPLE_VALUE_3)?;
                let mut t = Text::new();
                for (what, k) in [("random", set.random), ("known", set.known), ("chained", set.chained)] {
                    t.padded(what, 8).str(" id ").id(k.id.get());
                    t.str(if k.created { " created" } else { " kept   " }).str(" pub ").hex(&k.public).str("\n");
                }
                Ok(t.into_string())
            }
            ["audit", from @ ..] if from.len() <= 1 => {
                let from = from.first().map(|f| parse_id(f)).transpose()?.unwrap_or(0);
                self.shell_audit(from)
            }
            _ => Err(Error::InvalidArgument(USAGE)),
        }
    }

    fn shell_audit(&mut self, from: u64) -> Result<String, Error> {
        let (entries, read) = self.audit_entries(from)?;
        let missed = self.audit_missed.into();
        Ok(crate::vault::audit_text(self.vault_is_secure(), read.oldest, read.next, missed, &entries))
    }

    fn shell_keys_gen(&mut self, rest: &[&str]) -> Result<String, Error> {
        let mut id = None;
        let mut private = None;
        let mut replace = false;
        let mut i = 0;
        while let Some(arg) = rest.get(i) {
            match *arg {
                "--replace" => replace = true,
                "--priv" => {
                    i += 1;
                    private = Some(parse_hex32(rest.get(i).ok_or(Error::InvalidArgument(USAGE))?)?);
                }
                "auto" if id.is_none() => {}
                other if id.is_none() => id = Some(DeviceKeyId::new(parse_id(other)?)?),
                _ => return Err(Error::InvalidArgument(USAGE)),
            }
            i += 1;
        }
        let origin = match &private {
            Some(v) => KeyOrigin::Known(v),
            None => KeyOrigin::Random,
        };
        let id = self.create_key(id, origin, replace)?;
        Ok(key_line(id, &self.psa.public_key(id)?))
    }
}
