//! What every JSON message shares: hex bytes ([`Hex`]), sealing ([`Sealed`])
//! and refusals ([`ErrorBody`] with a stable [`ApiCode`]).
//!
//! The messages themselves live with their protocol step: [`crate::purchase`]
//! (draw, complete, recover, suspicious). Binary fields are lowercase hex
//! (uppercase is accepted on input). A sealed field is
//! `nonce(12) || ciphertext || tag(16)` made by [`crate::session::seal`] under
//! the key named on the field, with associated data
//! [`crate::session::aad`]`(label, txn_id)`; the plaintext is the message's JSON.

use crate::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::session::{self, Key32, NONCE_LEN};

pub use crate::purchase::*;

/// Bytes carried as a lowercase hex string in JSON.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Hex(pub Vec<u8>);

impl Hex {
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Hex {
    fn from(v: Vec<u8>) -> Self {
        Self(v)
    }
}

impl From<&[u8]> for Hex {
    fn from(v: &[u8]) -> Self {
        Self(v.to_vec())
    }
}

impl core::fmt::Debug for Hex {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Hex({})", hex::encode(&self.0))
    }
}

// Byte-slice hex (not `hex::encode`/`decode`, which go char by char): every
// sealed field and log record passes through here on the hot path. Short
// fields (MACs, APDUs, S3, log records) are encoded in a buffer on the stack,
// longer ones (sealed messages) in one allocation; lowercase digits either way.
impl Serialize for Hex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        const ON_STACK: usize = 512;
        let n = self.0.len() * 2;
        let mut stack = [0u8; ON_STACK];
        let mut heap = Vec::new();
        let out: &mut [u8] = if n <= ON_STACK {
            &mut stack[..n]
        } else {
            heap.resize(n, 0);
            &mut heap
        };
        hex_lower(&self.0, out);
        s.serialize_str(core::str::from_utf8(out).expect("hex digits are ASCII"))
    }
}

/// `out` (twice as long as `bytes`) gets the lowercase hex of `bytes`.
fn hex_lower(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0x0f)];
    }
}

/// Nibble value of each ASCII byte, `0xff` for a byte that is not a hex digit
/// (either case, as DESIGN §5 reads hex).
const NIBBLE: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// The bytes of an even-length hex string, `None` for any other string.
pub(crate) fn hex_bytes(s: &[u8]) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let mut out = vec![0u8; s.len() / 2];
    let mut bad = 0u8;
    for (i, byte) in out.iter_mut().enumerate() {
        let (hi, lo) = (
            NIBBLE[usize::from(s[2 * i])],
            NIBBLE[usize::from(s[2 * i + 1])],
        );
        bad |= hi | lo;
        *byte = hi << 4 | lo;
    }
    // A non-digit's nibble is 0xff: its high bit survives the OR.
    (bad & 0x80 == 0).then_some(out)
}

// Read straight from the input's string, borrowed or not: no String copy of
// the hex before decoding it (serde's `Cow<str>` is always an owned copy).
impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct HexVisitor;
        impl serde::de::Visitor<'_> for HexVisitor {
            type Value = Hex;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("a hex string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Hex, E> {
                hex_bytes(s.as_bytes())
                    .map(Hex)
                    .ok_or_else(|| E::custom("expected a hex string"))
            }
        }
        d.deserialize_str(HexVisitor)
    }
}

impl crate::json::lite::Encode for Hex {
    fn encode(&self, w: &mut crate::json::lite::Writer) {
        w.hex(&self.0, false);
    }
}

impl crate::json::lite::Decode for Hex {
    fn decode(r: &mut crate::json::lite::Reader<'_>) -> Result<Self, crate::json::Error> {
        hex_bytes(r.text()?.as_bytes())
            .map(Hex)
            .ok_or(crate::json::Error(None))
    }
}

/// Why a sealed message could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("sealed message does not open: wrong key, label, transaction or tampered")]
    Open,
    #[error("sealed message is not the expected JSON: {0}")]
    Json(String),
    #[error("sealed message names another transaction")]
    TxnMismatch,
}

/// A message that travels sealed (AES-256-GCM): its label and the transaction
/// it belongs to make its associated data (`session::aad`). The servers seal
/// and open here; the clients hand the same key, nonce and associated data to
/// their driver's cipher (`crate::client::Crypto`) and read what it opened with
/// [`read_opened`], as [`Sealed::open`] does.
pub trait Sealed: Serialize + DeserializeOwned {
    /// Label in the associated data (`crate::session::label`).
    const LABEL: &'static str;
    /// The transaction the message names.
    fn txn_id(&self) -> &str;

    /// Seal under `key` with a fresh `nonce` (never reuse one under a key).
    fn seal(&self, key: &Key32, nonce: [u8; NONCE_LEN]) -> Hex {
        let plain = Zeroizing::new(crate::json::to_vec(self));
        seal_with(Self::LABEL, self.txn_id(), key, nonce, &plain)
    }

    /// Open a message sealed for `txn_id`; one that names another transaction
    /// inside is refused too.
    fn open(key: &Key32, txn_id: &str, sealed: &[u8]) -> Result<Self, SealError> {
        open_with(Self::LABEL, key, txn_id, sealed, crate::json::from_slice)
    }
}

/// Seal `plain` under `key` for `label` and `txn_id`.
fn seal_with(label: &str, txn_id: &str, key: &Key32, nonce: [u8; NONCE_LEN], plain: &[u8]) -> Hex {
    Hex(session::seal(
        key,
        nonce,
        &session::aad(label, txn_id),
        plain,
    ))
}

/// Open, read the plaintext with `read`, check the transaction it names.
fn open_with<T: Sealed>(
    label: &str,
    key: &Key32,
    txn_id: &str,
    sealed: &[u8],
    read: fn(&[u8]) -> Result<T, crate::json::Error>,
) -> Result<T, SealError> {
    let plain = Zeroizing::new(
        session::open(key, &session::aad(label, txn_id), sealed).map_err(|_| SealError::Open)?,
    );
    read_opened(txn_id, &plain, read)
}

/// Read an opened plaintext with `read`, and check the transaction it names
/// (also where a client's driver opened it: `crate::client::Crypto`).
pub(crate) fn read_opened<T: Sealed>(
    txn_id: &str,
    plain: &[u8],
    read: fn(&[u8]) -> Result<T, crate::json::Error>,
) -> Result<T, SealError> {
    let m = read(plain).map_err(|e| SealError::Json(e.as_str().into()))?;
    if m.txn_id() != txn_id {
        return Err(SealError::TxnMismatch);
    }
    Ok(m)
}

/// Stable machine-readable refusal codes of the payment and load APIs. Both
/// ends match on these; a code never changes meaning. Unknown codes (a newer
/// server) read as [`ApiCode::Other`]. JSON: the string [`ApiCode::as_str`]
/// (one table both ways, `crate::json::wire_strings!`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiCode {
    Malformed,
    BodyTooLarge,
    UnknownMerchant,
    BadMac,
    ModeNotAllowed,
    Expired,
    BadSeal,
    TxnMismatch,
    AmountMismatch,
    CurrencyMismatch,
    OriginMismatch,
    TerminalMismatch,
    UnknownKeyVersion,
    CardExpired,
    InsufficientFunds,
    Replay,
    UnknownTxn,
    S3Mismatch,
    /// A log record that does not verify (forged, of another card or
    /// transaction): refused whole, nothing changed.
    BadLogRecord,
    /// The merchant's order is already paid by another transaction.
    OrderPaid,
    /// Another attempt for the same order is still undecided.
    OrderInFlight,
    /// The load session names a bank the load server does not know.
    UnknownBank,
    /// The card's S1 does not verify (forged, changed amount or balance,
    /// another card).
    S1Mismatch,
    /// The load would take the card past its maximum balance.
    OverMaxBalance,
    /// The bank may not load this purse.
    PurseNotAllowed,
    /// The card's proof (a zero-value INITIALIZE FOR LOAD, a log record) does
    /// not fit this load: refused whole, nothing changed.
    BadProof,
    WrongState,
    Unauthorized,
    NotFound,
    Internal,
    /// Any code this side does not know.
    Other,
}

crate::json::wire_strings!(ApiCode {
    Malformed => "malformed",
    BodyTooLarge => "body_too_large",
    UnknownMerchant => "unknown_merchant",
    BadMac => "bad_mac",
    ModeNotAllowed => "mode_not_allowed",
    Expired => "expired",
    BadSeal => "bad_seal",
    TxnMismatch => "txn_mismatch",
    AmountMismatch => "amount_mismatch",
    CurrencyMismatch => "currency_mismatch",
    OriginMismatch => "origin_mismatch",
    TerminalMismatch => "terminal_mismatch",
    UnknownKeyVersion => "unknown_key_version",
    CardExpired => "card_expired",
    InsufficientFunds => "insufficient_funds",
    Replay => "replay",
    UnknownTxn => "unknown_txn",
    S3Mismatch => "s3_mismatch",
    BadLogRecord => "bad_log_record",
    OrderPaid => "order_paid",
    OrderInFlight => "order_in_flight",
    UnknownBank => "unknown_bank",
    S1Mismatch => "s1_mismatch",
    OverMaxBalance => "over_max_balance",
    PurseNotAllowed => "purse_not_allowed",
    BadProof => "bad_proof",
    WrongState => "wrong_state",
    Unauthorized => "unauthorized",
    NotFound => "not_found",
    Internal => "internal",
    Other => "other",
} unknown = Other);

/// Every refusal: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

crate::json::lite::decode_struct!(ErrorBody { error });

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable machine-readable code.
    pub code: ApiCode,
    pub message: String,
}

crate::json::lite::decode_struct!(ErrorDetail { code, message });

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_roundtrip_and_rejects_garbage() {
        let h = Hex(vec![0xde, 0xad, 0x01]);
        let j = serde_json::to_string(&h).unwrap();
        assert_eq!(j, "\"dead01\"");
        assert_eq!(serde_json::from_str::<Hex>(&j).unwrap(), h);
        assert_eq!(serde_json::from_str::<Hex>("\"DEAD01\"").unwrap(), h);
        assert!(serde_json::from_str::<Hex>("\"xyz\"").is_err());
        assert!(serde_json::from_str::<Hex>("\"abc\"").is_err());
    }

    proptest::proptest! {
        /// The table decoder reads exactly what the `hex` crate reads (either case,
        /// even length, digits only), through serde_json and through lite, borrowed
        /// and escaped (owned) strings alike.
        #[test]
        fn hex_reads_what_the_hex_crate_reads(s in "[0-9a-fA-Fg-zG-Z \\u{e9}\\u{2603}]{0,40}", escape in proptest::bool::ANY) {
            // An escaped first digit (`\u0030` is "0") makes both readers copy the string.
            let (json, text) = if escape {
                (format!("\"\\u0030{s}\""), format!("0{s}"))
            } else {
                (format!("\"{s}\""), s.clone())
            };
            let expect = hex::decode(&text).ok().map(Hex);
            proptest::prop_assert_eq!(serde_json::from_str::<Hex>(&json).ok(), expect.clone());
            proptest::prop_assert_eq!(crate::json::lite::from_slice::<Hex>(json.as_bytes()).ok(), expect);
        }
    }

    #[test]
    fn hex_is_hex_encode_on_the_stack_and_on_the_heap() {
        // Every byte value, and lengths around the stack buffer's 256 bytes.
        for len in [0usize, 1, 255, 256, 257, 1000] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let j = serde_json::to_string(&Hex(bytes.clone())).unwrap();
            assert_eq!(j, format!("\"{}\"", hex::encode(&bytes)), "len {len}");
        }
        let all: Vec<u8> = (0..=255u8).collect();
        let j = serde_json::to_string(&Hex(all.clone())).unwrap();
        assert_eq!(j, format!("\"{}\"", hex::encode(&all)));
    }

    #[test]
    fn sealed_messages_open_only_for_their_txn_and_label() {
        let k = Key32::new([4; 32]);
        let r = SuspiciousReport {
            txn_id: "T-1".into(),
            page_origin: "http://a".into(),
            reason: String::new(),
        };
        let s = r.seal(&k, [1; 12]);
        assert_eq!(SuspiciousReport::open(&k, "T-1", s.as_slice()).unwrap(), r);
        assert_eq!(
            SuspiciousReport::open(&k, "T-2", s.as_slice()),
            Err(SealError::Open)
        );
        // Same key and txn, another label: does not open as another kind.
        assert_eq!(
            RecoverRequest::open(&k, "T-1", s.as_slice()),
            Err(SealError::Open)
        );
        // A message sealed for T-1 that names T-2 inside is refused.
        let lying = SuspiciousReport {
            txn_id: "T-2".into(),
            ..r.clone()
        };
        let sealed = Hex(session::seal(
            &k,
            [2; 12],
            &session::aad(SuspiciousReport::LABEL, "T-1"),
            &serde_json::to_vec(&lying).unwrap(),
        ));
        assert_eq!(
            SuspiciousReport::open(&k, "T-1", sealed.as_slice()),
            Err(SealError::TxnMismatch)
        );
    }

    #[test]
    fn api_codes_are_stable_and_unknown_ones_read_as_other() {
        for c in [
            ApiCode::BadLogRecord,
            ApiCode::OrderPaid,
            ApiCode::S3Mismatch,
        ] {
            let v = serde_json::to_value(c).unwrap();
            assert_eq!(v, c.as_str());
            assert_eq!(serde_json::from_value::<ApiCode>(v).unwrap(), c);
        }
        let c: ApiCode = serde_json::from_str("\"from_the_future\"").unwrap();
        assert_eq!(c, ApiCode::Other);
        // Every code: one wire string each, read back as itself by both JSON codecs.
        let mut seen = std::collections::HashSet::new();
        for c in ApiCode::ALL {
            assert!(seen.insert(c.as_str()), "{c:?} repeats a wire string");
            let j = format!("\"{}\"", c.as_str());
            assert_eq!(serde_json::to_string(&c).unwrap(), j);
            assert_eq!(crate::json::lite::to_string(&c).unwrap(), j);
            assert_eq!(serde_json::from_str::<ApiCode>(&j).unwrap(), c);
            assert_eq!(
                crate::json::lite::from_slice::<ApiCode>(j.as_bytes()),
                Ok(c)
            );
        }
        assert!(serde_json::from_str::<ApiCode>("7").is_err());
        assert!(crate::json::lite::from_slice::<ApiCode>(b"7").is_err());
    }
}
