//! MQTT topic names: `{prefix}/{device_id}/{data|session|sealed|errors}`.

use alloc::format;
use alloc::string::String;

/// The default topic prefix.
pub const DEFAULT_PREFIX: &str = "prov";

/// The four topics of a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `data`: device -> server, COSE_Sign1, QoS 1 (0 allowed).
    Data,
    /// `session`: device -> server, Sign1(COSE_Encrypt), QoS 2.
    Session,
    /// `sealed`: device -> server, COSE_Encrypt0, QoS 0 or 1.
    Sealed,
    /// `errors`: server -> device, errors map, QoS 1.
    Errors,
}

impl Kind {
    /// All kinds.
    pub const ALL: [Kind; 4] = [Kind::Data, Kind::Session, Kind::Sealed, Kind::Errors];

    /// The last topic level.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Data => "data",
            Kind::Session => "session",
            Kind::Sealed => "sealed",
            Kind::Errors => "errors",
        }
    }

    /// The kind of a last topic level.
    pub fn from_level(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The MQTT QoS the contract gives this topic (the highest allowed).
    pub fn qos(self) -> u8 {
        match self {
            Kind::Data | Kind::Sealed | Kind::Errors => 1,
            Kind::Session => 2,
        }
    }
}

/// Is `id` a valid device id: `[A-Za-z0-9._-]{1,64}`?
pub fn valid_device_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `{prefix}/{device_id}/{kind}`. The device id is not checked here: check
/// it with [`valid_device_id`] where it enters the system.
pub fn topic(prefix: &str, device_id: &str, kind: Kind) -> String {
    // Concatenated, not format!ted: the device builds its topics with this
    // and links no formatting machinery (docs/firmware.md, "Footprint").
    let kind = kind.as_str();
    let mut t = String::with_capacity(prefix.len() + device_id.len() + kind.len() + 2);
    for part in [prefix, "/", device_id, "/", kind] {
        t.push_str(part);
    }
    t
}

/// The subscription filter for one kind of all devices: `{prefix}/+/{kind}`.
pub fn subscription(prefix: &str, kind: Kind) -> String {
    format!("{prefix}/+/{}", kind.as_str())
}

/// Split `{prefix}/{device_id}/{kind}`; `None` unless the prefix matches
/// exactly, the device id is valid and the kind is one of ours.
pub fn parse_topic<'a>(prefix: &str, topic: &'a str) -> Option<(&'a str, Kind)> {
    let rest = topic.strip_prefix(prefix)?.strip_prefix('/')?;
    let (id, kind) = rest.split_once('/')?;
    if !valid_device_id(id) {
        return None;
    }
    Some((id, Kind::from_level(kind)?))
}

#[cfg(test)]
mod tests;
