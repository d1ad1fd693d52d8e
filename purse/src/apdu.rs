//! ISO/IEC 7816-4 short APDUs: command and response codec.
//!
//! Parsing never panics: every malformed input is a typed [`ApduError`]. Only short
//! APDUs (Lc, Le ≤ 255/256) are accepted; the purse never needs extended length.

use crate::prelude::*;
use core::fmt;
use thiserror::Error;

/// Why bytes are not a well-formed APDU.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ApduError {
    #[error("command APDU too short: {0} bytes, need at least 4")]
    CommandTooShort(usize),
    #[error("extended-length APDUs are not supported")]
    ExtendedLength,
    #[error("Lc = {lc} but {body} bytes follow the header")]
    LengthMismatch { lc: usize, body: usize },
    #[error("command data too long: {0} bytes (max 255)")]
    DataTooLong(usize),
    #[error("response APDU too short: {0} bytes, need the 2-byte status word")]
    ResponseTooShort(usize),
    #[error("response data has {got} bytes, expected {expected}")]
    WrongDataLength { expected: usize, got: usize },
    #[error("card answered status word {0}")]
    Status(StatusWord),
    #[error("invalid field: {0}")]
    InvalidField(&'static str),
}

/// A two-byte status word (SW1 SW2).
#[derive(Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct StatusWord(pub u16);

impl StatusWord {
    pub const OK: Self = Self(0x9000);
    pub const WRONG_LENGTH: Self = Self(0x6700);
    pub const PIN_REQUIRED: Self = Self(0x6982);
    pub const PIN_BLOCKED: Self = Self(0x6983);
    pub const NO_INITIALIZE: Self = Self(0x6985);
    pub const MAC_WRONG: Self = Self(0x6988);
    /// Data field not valid (e.g. a PIN that is not 4–8 ASCII digits).
    pub const WRONG_DATA: Self = Self(0x6A80);
    pub const FUNDS: Self = Self(0x9401);
    pub const OVER_MAX_BALANCE: Self = Self(0x9402);
    pub const EXPIRED: Self = Self(0x9403);
    pub const AID_NOT_FOUND: Self = Self(0x6A82);
    pub const WRONG_P1P2: Self = Self(0x6A86);
    pub const INS_NOT_SUPPORTED: Self = Self(0x6D00);
    pub const CLA_NOT_SUPPORTED: Self = Self(0x6E00);
    /// The transaction counter is exhausted (ATC at 0xFFFF): the card is at end of life.
    pub const ATC_EXHAUSTED: Self = Self(0x6581);
    /// READ LOG of a record the log does not hold (yet).
    pub const RECORD_NOT_FOUND: Self = Self(0x6A83);
    /// The card could not make the new state durable; nothing changed.
    pub const PERSIST_FAILED: Self = Self(0x6F00);

    /// `63Cx`: wrong PIN or PIN status, `x` tries left.
    pub const fn pin_tries(left: u8) -> Self {
        Self(0x63C0 | (left as u16 & 0x0F))
    }

    /// Tries left if this is a `63Cx` status word.
    pub const fn pin_tries_left(self) -> Option<u8> {
        if self.0 & 0xFFF0 == 0x63C0 {
            Some((self.0 & 0x0F) as u8)
        } else {
            None
        }
    }

    pub const fn is_ok(self) -> bool {
        self.0 == 0x9000
    }

    pub const fn to_bytes(self) -> [u8; 2] {
        self.0.to_be_bytes()
    }

    /// What the status word means, for logs and error messages.
    pub fn meaning(self) -> &'static str {
        match self {
            Self::OK => "ok",
            Self::WRONG_LENGTH => "wrong length",
            Self::PIN_REQUIRED => "PIN verification required",
            Self::PIN_BLOCKED => "PIN blocked",
            Self::NO_INITIALIZE => "no INITIALIZE pending",
            Self::MAC_WRONG => "MAC wrong",
            Self::WRONG_DATA => "wrong data",
            Self::FUNDS => "insufficient funds",
            Self::OVER_MAX_BALANCE => "over maximum balance",
            Self::EXPIRED => "card expired",
            Self::AID_NOT_FOUND => "application not found",
            Self::WRONG_P1P2 => "wrong P1/P2",
            Self::INS_NOT_SUPPORTED => "instruction not supported",
            Self::CLA_NOT_SUPPORTED => "class not supported",
            Self::ATC_EXHAUSTED => "transaction counter exhausted",
            Self::RECORD_NOT_FOUND => "record not found",
            Self::PERSIST_FAILED => "card memory failure",
            sw if sw.pin_tries_left().is_some() => "wrong PIN",
            _ => "unknown status",
        }
    }
}

impl fmt::Debug for StatusWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SW {:04X}", self.0)
    }
}

impl fmt::Display for StatusWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04X} ({})", self.0, self.meaning())
    }
}

/// A command APDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub cla: u8,
    pub ins: u8,
    pub p1: u8,
    pub p2: u8,
    pub data: Vec<u8>,
    /// Expected response length; `Some(256)` encodes as `00`.
    pub le: Option<u16>,
}

impl Command {
    pub fn new(cla: u8, ins: u8, p1: u8, p2: u8, data: Vec<u8>, le: Option<u16>) -> Self {
        Self {
            cla,
            ins,
            p1,
            p2,
            data,
            le,
        }
    }

    /// Parse a short command APDU (ISO/IEC 7816-4 cases 1–4).
    pub fn parse(bytes: &[u8]) -> Result<Self, ApduError> {
        let [cla, ins, p1, p2, body @ ..] = bytes else {
            return Err(ApduError::CommandTooShort(bytes.len()));
        };
        let (data, le) = match body {
            // case 1
            [] => (Vec::new(), None),
            // case 2
            [le] => (Vec::new(), Some(if *le == 0 { 256 } else { *le as u16 })),
            // 00 followed by more bytes introduces an extended Lc
            [0, ..] => return Err(ApduError::ExtendedLength),
            [lc, rest @ ..] => {
                let lc = *lc as usize;
                match rest.len() {
                    n if n == lc => (rest.to_vec(), None),
                    n if n == lc + 1 => {
                        let le = rest[lc];
                        (
                            rest[..lc].to_vec(),
                            Some(if le == 0 { 256 } else { le as u16 }),
                        )
                    }
                    n => return Err(ApduError::LengthMismatch { lc, body: n }),
                }
            }
        };
        Ok(Self {
            cla: *cla,
            ins: *ins,
            p1: *p1,
            p2: *p2,
            data,
            le,
        })
    }

    /// Encode as a short APDU. Fails only if the data or Le do not fit a short APDU.
    pub fn try_to_bytes(&self) -> Result<Vec<u8>, ApduError> {
        if self.data.len() > 255 {
            return Err(ApduError::DataTooLong(self.data.len()));
        }
        if matches!(self.le, Some(0) | Some(257..)) {
            return Err(ApduError::InvalidField("Le"));
        }
        let mut out = Vec::with_capacity(6 + self.data.len());
        out.extend_from_slice(&[self.cla, self.ins, self.p1, self.p2]);
        if !self.data.is_empty() {
            out.push(self.data.len() as u8);
            out.extend_from_slice(&self.data);
        }
        if let Some(le) = self.le {
            out.push((le & 0xFF) as u8);
        }
        Ok(out)
    }

    /// Encode; the typed constructors of [`crate::command`] always fit.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.try_to_bytes()
            .unwrap_or_else(|_| panic!("command built with more than 255 data bytes or invalid Le"))
    }
}

/// A response APDU: data then SW1 SW2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub data: Vec<u8>,
    pub sw: StatusWord,
}

impl Response {
    pub fn ok(data: Vec<u8>) -> Self {
        Self {
            data,
            sw: StatusWord::OK,
        }
    }

    pub fn status(sw: StatusWord) -> Self {
        Self {
            data: Vec::new(),
            sw,
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, ApduError> {
        if bytes.len() < 2 {
            return Err(ApduError::ResponseTooShort(bytes.len()));
        }
        let (data, sw) = bytes.split_at(bytes.len() - 2);
        Ok(Self {
            data: data.to_vec(),
            sw: StatusWord(u16::from_be_bytes([sw[0], sw[1]])),
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 2);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(&self.sw.to_bytes());
        out
    }

    /// The data if the status word is 9000, else the status as an error.
    pub fn into_ok(self) -> Result<Vec<u8>, ApduError> {
        if self.sw.is_ok() {
            Ok(self.data)
        } else {
            Err(ApduError::Status(self.sw))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_all_four_cases() {
        let c1 = Command::parse(&[0x80, 0x5C, 0, 0]).unwrap();
        assert_eq!((c1.data.len(), c1.le), (0, None));
        let c2 = Command::parse(&[0x80, 0x5C, 0, 0, 4]).unwrap();
        assert_eq!(c2.le, Some(4));
        let c2z = Command::parse(&[0x80, 0x5C, 0, 0, 0]).unwrap();
        assert_eq!(c2z.le, Some(256));
        let c3 = Command::parse(&[0, 0x20, 0, 0, 2, b'1', b'2']).unwrap();
        assert_eq!((c3.data.as_slice(), c3.le), (&b"12"[..], None));
        let c4 = Command::parse(&[0, 0xA4, 4, 0, 1, 0xF0, 0]).unwrap();
        assert_eq!((c4.data.as_slice(), c4.le), (&[0xF0][..], Some(256)));
    }

    #[test]
    fn rejects_malformed_commands() {
        assert_eq!(Command::parse(&[]), Err(ApduError::CommandTooShort(0)));
        assert_eq!(
            Command::parse(&[0, 1, 2]),
            Err(ApduError::CommandTooShort(3))
        );
        assert_eq!(
            Command::parse(&[0, 0xA4, 4, 0, 0, 0, 1]),
            Err(ApduError::ExtendedLength)
        );
        assert_eq!(
            Command::parse(&[0, 0xA4, 4, 0, 3, 1]),
            Err(ApduError::LengthMismatch { lc: 3, body: 1 })
        );
        assert_eq!(
            Command::parse(&[0, 0xA4, 4, 0, 1, 1, 2, 3]),
            Err(ApduError::LengthMismatch { lc: 1, body: 3 })
        );
    }

    #[test]
    fn response_codec() {
        assert_eq!(
            Response::parse(&[0x90]),
            Err(ApduError::ResponseTooShort(1))
        );
        let r = Response::parse(&[1, 2, 0x63, 0xC2]).unwrap();
        assert_eq!(r.data, vec![1, 2]);
        assert_eq!(r.sw.pin_tries_left(), Some(2));
        assert_eq!(r.to_bytes(), vec![1, 2, 0x63, 0xC2]);
        assert_eq!(
            Response::status(StatusWord::FUNDS).into_ok(),
            Err(ApduError::Status(StatusWord::FUNDS))
        );
        assert_eq!(StatusWord::PIN_BLOCKED.pin_tries_left(), None);
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Command::parse(&bytes);
            let _ = Response::parse(&bytes);
        }

        #[test]
        fn encode_parse_roundtrip(cla: u8, ins: u8, p1: u8, p2: u8,
                                  data in proptest::collection::vec(any::<u8>(), 0..=255),
                                  le in proptest::option::of(1u16..=256)) {
            let c = Command::new(cla, ins, p1, p2, data, le);
            let bytes = c.to_bytes();
            prop_assert_eq!(Command::parse(&bytes).unwrap(), c);
        }

        #[test]
        fn response_roundtrip(data in proptest::collection::vec(any::<u8>(), 0..300), sw: u16) {
            let r = Response { data, sw: StatusWord(sw) };
            prop_assert_eq!(Response::parse(&r.to_bytes()).unwrap(), r);
        }
    }
}
