//! Return codes: Zephyr's MGMT_ERR_* and the group return codes of DESIGN.md.

/// Zephyr's `enum mcumgr_err_t` (include/zephyr/mgmt/mcumgr/mgmt/mgmt_defines.h).
/// Carried as `{"rc": N}` in a response body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum MgmtErr {
    /// No error (success).
    EOk = 0,
    /// Unknown error.
    EUnknown = 1,
    /// Insufficient memory.
    ENoMem = 2,
    /// Error in input value (also: malformed CBOR, missing field).
    EInval = 3,
    /// Operation timed out.
    ETimeout = 4,
    /// No such file/entry.
    ENoEnt = 5,
    /// Current state disallows command.
    EBadState = 6,
    /// Response too large.
    EMsgSize = 7,
    /// Command not supported.
    ENotSup = 8,
    /// Corrupt (Zephyr: packet shorter than its header says).
    ECorrupt = 9,
    /// Command blocked by processing of other command.
    EBusy = 10,
    /// Access denied.
    EAccessDenied = 11,
    /// Requested SMP protocol version too old.
    EUnsupportedTooOld = 12,
    /// Requested SMP protocol version too new.
    EUnsupportedTooNew = 13,
}

impl MgmtErr {
    /// The numeric code.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// The error for a numeric code, `None` if the code is not one of Zephyr's (0..=13).
    pub fn from_code(code: u16) -> Option<MgmtErr> {
        use MgmtErr::*;
        Some(match code {
            0 => EOk,
            1 => EUnknown,
            2 => ENoMem,
            3 => EInval,
            4 => ETimeout,
            5 => ENoEnt,
            6 => EBadState,
            7 => EMsgSize,
            8 => ENotSup,
            9 => ECorrupt,
            10 => EBusy,
            11 => EAccessDenied,
            12 => EUnsupportedTooOld,
            13 => EUnsupportedTooNew,
            _ => return None,
        })
    }
}

impl core::fmt::Display for MgmtErr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let text = match self {
            MgmtErr::EOk => "no error",
            MgmtErr::EUnknown => "unknown error",
            MgmtErr::ENoMem => "insufficient memory",
            MgmtErr::EInval => "invalid input value",
            MgmtErr::ETimeout => "operation timed out",
            MgmtErr::ENoEnt => "no such entry",
            MgmtErr::EBadState => "current state disallows command",
            MgmtErr::EMsgSize => "response too large",
            MgmtErr::ENotSup => "command not supported",
            MgmtErr::ECorrupt => "corrupt request",
            MgmtErr::EBusy => "busy",
            MgmtErr::EAccessDenied => "access denied",
            MgmtErr::EUnsupportedTooOld => "SMP protocol version too old",
            MgmtErr::EUnsupportedTooNew => "SMP protocol version too new",
        };
        write!(f, "MGMT_ERR {} ({text})", self.code())
    }
}

/// Return codes of the provisioning groups 64/65/66 (DESIGN.md "Group return codes").
/// Carried as `{"err": {"group": G, "rc": RC}}` for SMP v2 clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum GroupRc {
    /// Success.
    Ok = 0,
    /// Unknown error.
    Unknown = 1,
    /// The key / certificate does not exist.
    NotFound = 2,
    /// The id is in use and `"replace": true` was not given.
    Exists = 3,
    /// Invalid argument (id out of range, bad length, bad DER, ...).
    InvalidArgument = 4,
    /// No room left in storage.
    StorageFull = 5,
    /// A cryptographic operation failed (or the RNG was found broken).
    CryptoFailure = 6,
    /// The certificate's public key is not the key's.
    Mismatch = 7,
    /// Input or result too large.
    TooLarge = 8,
    /// The device refuses changes (locked).
    Locked = 9,
}

impl GroupRc {
    /// The numeric code.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// The return code for a numeric code, `None` if not 0..=9.
    pub fn from_code(code: u16) -> Option<GroupRc> {
        use GroupRc::*;
        Some(match code {
            0 => Ok,
            1 => Unknown,
            2 => NotFound,
            3 => Exists,
            4 => InvalidArgument,
            5 => StorageFull,
            6 => CryptoFailure,
            7 => Mismatch,
            8 => TooLarge,
            9 => Locked,
            _ => return None,
        })
    }

    /// The nearest MGMT_ERR for SMP v1 clients, which cannot receive group errors:
    ///
    /// | group rc | MGMT_ERR |
    /// | --- | --- |
    /// | 0 ok | 0 EOK |
    /// | 1 unknown | 1 EUNKNOWN |
    /// | 2 not found | 5 ENOENT |
    /// | 3 exists | 6 EBADSTATE |
    /// | 4 invalid argument | 3 EINVAL |
    /// | 5 storage full | 2 ENOMEM |
    /// | 6 crypto failure | 1 EUNKNOWN |
    /// | 7 mismatch | 3 EINVAL |
    /// | 8 too large | 7 EMSGSIZE |
    /// | 9 locked | 11 EACCESSDENIED |
    pub fn to_mgmt(self) -> MgmtErr {
        match self {
            GroupRc::Ok => MgmtErr::EOk,
            GroupRc::Unknown => MgmtErr::EUnknown,
            GroupRc::NotFound => MgmtErr::ENoEnt,
            GroupRc::Exists => MgmtErr::EBadState,
            GroupRc::InvalidArgument => MgmtErr::EInval,
            GroupRc::StorageFull => MgmtErr::ENoMem,
            GroupRc::CryptoFailure => MgmtErr::EUnknown,
            GroupRc::Mismatch => MgmtErr::EInval,
            GroupRc::TooLarge => MgmtErr::EMsgSize,
            GroupRc::Locked => MgmtErr::EAccessDenied,
        }
    }
}

impl core::fmt::Display for GroupRc {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let text = match self {
            GroupRc::Ok => "ok",
            GroupRc::Unknown => "unknown error",
            GroupRc::NotFound => "not found",
            GroupRc::Exists => "already exists",
            GroupRc::InvalidArgument => "invalid argument",
            GroupRc::StorageFull => "storage full",
            GroupRc::CryptoFailure => "crypto failure",
            GroupRc::Mismatch => "mismatch",
            GroupRc::TooLarge => "too large",
            GroupRc::Locked => "locked",
        };
        f.write_str(text)
    }
}

/// What a group handler returns on failure: a management error (sent as `{"rc": N}`) or a
/// group return code (sent as `{"err": {...}}` to SMP v2 clients, see [`crate::error_body`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HandlerError {
    /// A Zephyr MGMT_ERR.
    Mgmt(MgmtErr),
    /// A group return code of the request's group.
    Group(GroupRc),
}

impl From<MgmtErr> for HandlerError {
    fn from(e: MgmtErr) -> Self {
        HandlerError::Mgmt(e)
    }
}

impl From<GroupRc> for HandlerError {
    fn from(rc: GroupRc) -> Self {
        HandlerError::Group(rc)
    }
}

impl core::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HandlerError::Mgmt(e) => write!(f, "{e}"),
            HandlerError::Group(rc) => write!(f, "group rc {} ({rc})", rc.code()),
        }
    }
}

impl core::error::Error for HandlerError {}
