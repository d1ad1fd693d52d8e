//! The card's persistent state (its "EEPROM") and its file format.
//!
//! Serialised as JSON. Keys and the PIN are in the file (the file *is* the
//! card), but `Debug` of [`CardState`] redacts them and nothing here logs them.

use core::fmt;

use purse::command::LogRecord;
use purse::{CardId, Expiry};
use serde::{Deserialize, Serialize};

/// Size of the cyclic transaction log.
pub const LOG_SIZE: usize = 10;
/// Number of PIN tries after personalisation / a correct PIN.
pub const PIN_TRIES: u8 = 3;
/// Version byte of the purse application, returned by SELECT.
pub const APP_VERSION: u8 = 1;
/// Version of the state file format.
pub const STATE_FORMAT: u32 = 1;

/// Errors of state validation and (de)serialisation.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file is not valid JSON of the expected shape.
    #[error("state file does not parse: {0}")]
    Parse(#[from] serde_json::Error),
    /// A field is out of range.
    #[error("invalid state: {0}")]
    Invalid(&'static str),
}

/// A 16-byte 2-key 3DES card key, hex in the file.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Key16(pub [u8; 16]);

impl TryFrom<String> for Key16 {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let v = hex::decode(&s).map_err(|e| e.to_string())?;
        let a: [u8; 16] = v
            .try_into()
            .map_err(|_| "key must be 16 bytes".to_string())?;
        Ok(Key16(a))
    }
}
impl From<Key16> for String {
    fn from(k: Key16) -> String {
        hex::encode_upper(k.0)
    }
}
impl fmt::Debug for Key16 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key16(<redacted>)")
    }
}

/// One purse (money or points).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurseState {
    /// ISO 4217 numeric currency (999 for points).
    pub currency: u16,
    /// Decimal exponent.
    pub exponent: u8,
    /// Balance in minor units.
    pub balance: u32,
    /// Maximum balance.
    pub max_balance: u32,
}

/// Everything the card keeps across power cycles.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardState {
    /// File format version ([`STATE_FORMAT`]).
    pub format: u32,
    /// Card id.
    pub card_id: CardId,
    /// Expiry.
    pub expiry: Expiry,
    /// Key version.
    pub key_version: u8,
    /// Purchase key KP (diversified).
    pub kp: Key16,
    /// Load key KL (diversified).
    pub kl: Key16,
    /// PIN as ASCII digits.
    pub pin: String,
    /// PIN tries left (0 = blocked).
    pub pin_tries_left: u8,
    /// Purchases above this need VERIFY in the selection (money purse).
    pub no_pin_limit: u32,
    /// Transaction counter: value of the last INITIALIZE.
    pub atc: u16,
    /// Money (index 0) and points (index 1).
    pub purses: [PurseState; 2],
    /// Last transactions, oldest first, at most [`LOG_SIZE`].
    pub log: Vec<LogRecord>,
    /// Opt-in test personalities ([`crate::decoy`]); none on a normal card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoy: Option<crate::decoy::Decoy>,
}

impl fmt::Debug for CardState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardState")
            .field("card_id", &self.card_id)
            .field("expiry", &self.expiry)
            .field("key_version", &self.key_version)
            .field("pin_tries_left", &self.pin_tries_left)
            .field("no_pin_limit", &self.no_pin_limit)
            .field("atc", &self.atc)
            .field("purses", &self.purses)
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

/// Valid PIN: 4–8 ASCII digits.
pub fn valid_pin(pin: &str) -> bool {
    (4..=8).contains(&pin.len()) && pin.bytes().all(|b| b.is_ascii_digit())
}

impl CardState {
    /// Check the invariants a personalised card must satisfy.
    pub fn validate(&self) -> Result<(), StateError> {
        if self.format != STATE_FORMAT {
            return Err(StateError::Invalid("unknown state format"));
        }
        if !valid_pin(&self.pin) {
            return Err(StateError::Invalid("PIN must be 4-8 digits"));
        }
        if self.pin_tries_left > PIN_TRIES {
            return Err(StateError::Invalid("pin_tries_left > 3"));
        }
        for p in &self.purses {
            if p.balance > p.max_balance {
                return Err(StateError::Invalid("balance above max balance"));
            }
        }
        if self.log.len() > LOG_SIZE {
            return Err(StateError::Invalid("log longer than 10"));
        }
        Ok(())
    }

    /// Parse and validate a state file's bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self, StateError> {
        let s: CardState = serde_json::from_slice(bytes)?;
        s.validate()?;
        Ok(s)
    }

    /// Serialise (pretty JSON; the file is small).
    pub fn to_json(&self) -> Result<Vec<u8>, StateError> {
        Ok(serde_json::to_vec_pretty(self)?)
    }

    /// Append a log record, dropping the oldest beyond [`LOG_SIZE`].
    pub fn push_log(&mut self, e: LogRecord) {
        if self.log.len() >= LOG_SIZE {
            self.log.remove(0);
        }
        self.log.push(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state file written before READ LOG carried S3 (log records of 29 bytes).
    const OLD_STATE: &str = r#"{
      "format": 1, "card_id": "6280000000000001", "expiry": "301231", "key_version": 1,
      "kp": "00112233445566778899AABBCCDDEEFF", "kl": "00112233445566778899AABBCCDDEEFF",
      "pin": "1234", "pin_tries_left": 3, "no_pin_limit": 2000, "atc": 1,
      "purses": [{"currency": 978, "exponent": 2, "balance": 8766, "max_balance": 100000},
                 {"currency": 999, "exponent": 0, "balance": 500, "max_balance": 1000000}],
      "log": [{"kind": "purchase", "purse": "money", "amount": 1234, "balance_after": 8766,
               "atc": 1, "terminal": "000000000001", "date": "20261123", "time": "194500", "seq": 7}]
    }"#;

    #[test]
    fn old_state_files_load_with_empty_receipts() {
        let s = CardState::from_json(OLD_STATE.as_bytes()).unwrap();
        assert_eq!(s.log.len(), 1);
        assert_eq!(s.log[0].amount, 1234);
        assert_eq!(
            s.log[0].s3, [0; 8],
            "no S3 was kept: zeros, which prove nothing"
        );
        // Written back, the record keeps its S3 field from now on.
        let again = CardState::from_json(&s.to_json().unwrap()).unwrap();
        assert_eq!(again, s);
        assert!(String::from_utf8(s.to_json().unwrap())
            .unwrap()
            .contains("\"s3\": \"0000000000000000\""));
    }
}
