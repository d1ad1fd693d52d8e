//! Messages written without serde: the mirror of [`super::read`]. One
//! [`Writer`] (strings with serde_json's escapes, integers, booleans, `null`,
//! hex, arrays, objects through [`Object`]) and an [`Encode`] impl per message
//! the clients send (mostly written by [`encode_struct!`] from the field list).
//! The clients and the widget write every outgoing message through this,
//! natively and in the browser, so a message has one writer on each side:
//! serde's `Serialize` derive per message was most of the wasm's remaining
//! serde code (docs/widget.md). The bytes are serde_json's for the same value
//! (compact, fields in declaration order): differential tests beside each
//! message hold the two to it, since the other ends (and sealed plaintexts)
//! read them.

use crate::prelude::*;
/// A message's (or a field value's) writer.
pub trait Encode {
    fn encode(&self, w: &mut Writer);
}

/// The JSON text being written.
#[derive(Default)]
pub struct Writer {
    out: String,
}

/// `v` as compact JSON, the bytes serde_json writes for it.
pub fn encode<T: Encode + ?Sized>(v: &T) -> String {
    let mut w = Writer::default();
    v.encode(&mut w);
    w.out
}

impl Writer {
    /// A string, escaped as serde_json does (`"`, `\`, control characters; nothing
    /// else: non-ASCII, U+2028 and DEL go as they are).
    pub fn str(&mut self, s: &str) {
        super::write_str(&mut self.out, s);
    }

    pub fn u64(&mut self, n: u64) {
        super::write_u64(&mut self.out, n);
    }

    pub fn bool(&mut self, b: bool) {
        self.out.push_str(if b { "true" } else { "false" });
    }

    pub fn null(&mut self) {
        self.out.push_str("null");
    }

    /// `bytes` as a hex string, lowercase (`Hex`) or uppercase (`ApduHex`, `Terminal`).
    #[inline(never)]
    pub fn hex(&mut self, bytes: &[u8], upper: bool) {
        let digits: &[u8; 16] = if upper {
            b"0123456789ABCDEF"
        } else {
            b"0123456789abcdef"
        };
        self.out.reserve(bytes.len() * 2 + 2);
        self.out.push('"');
        for b in bytes {
            self.out.push(char::from(digits[usize::from(b >> 4)]));
            self.out.push(char::from(digits[usize::from(b & 0x0f)]));
        }
        self.out.push('"');
    }

    /// An array of `items`.
    pub fn array<T: Encode>(&mut self, items: &[T]) {
        self.out.push('[');
        for (i, v) in items.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            v.encode(self);
        }
        self.out.push(']');
    }

    /// An object: its members through [`Object::field`], then [`Object::end`].
    pub fn object(&mut self) -> Object<'_> {
        self.out.push('{');
        Object {
            w: self,
            first: true,
        }
    }
}

/// An object being written.
pub struct Object<'a> {
    w: &'a mut Writer,
    first: bool,
}

impl Object<'_> {
    /// The next member's name (a Rust identifier or serde rename: nothing to
    /// escape); its value is written next, through the returned writer.
    #[inline(never)]
    pub fn key(&mut self, name: &str) -> &mut Writer {
        if !self.first {
            self.w.out.push(',');
        }
        self.first = false;
        self.w.out.push('"');
        self.w.out.push_str(name);
        self.w.out.push_str("\":");
        self.w
    }

    /// A member `name: v`.
    pub fn field<T: Encode + ?Sized>(&mut self, name: &str, v: &T) {
        v.encode(self.key(name));
    }

    /// A member unless `v` is `None` (serde's `skip_serializing_if = "Option::is_none"`).
    pub fn some<T: Encode>(&mut self, name: &str, v: &Option<T>) {
        if let Some(v) = v {
            self.field(name, v);
        }
    }

    pub fn end(self) {
        self.w.out.push('}');
    }
}

impl Encode for str {
    fn encode(&self, w: &mut Writer) {
        w.str(self);
    }
}

impl Encode for String {
    fn encode(&self, w: &mut Writer) {
        w.str(self);
    }
}

impl<T: Encode + ?Sized> Encode for &T {
    fn encode(&self, w: &mut Writer) {
        (**self).encode(w);
    }
}

impl Encode for bool {
    fn encode(&self, w: &mut Writer) {
        w.bool(*self);
    }
}

macro_rules! unsigned {
    ($($t:ty)*) => {$(
        impl Encode for $t {
            fn encode(&self, w: &mut Writer) {
                w.u64(u64::from(*self));
            }
        }
    )*};
}
unsigned!(u8 u16 u32 u64);

impl<T: Encode> Encode for Option<T> {
    fn encode(&self, w: &mut Writer) {
        match self {
            Some(v) => v.encode(w),
            None => w.null(),
        }
    }
}

impl<T: Encode> Encode for Vec<T> {
    fn encode(&self, w: &mut Writer) {
        w.array(self);
    }
}

/// `impl Encode` for a struct with named fields, as serde's derive writes it:
/// fields in declaration order, `field: some` left out when `None`
/// (`skip_serializing_if = "Option::is_none"`); `"tag" = "value"` first writes
/// an internally tagged enum's tag (for a variant's struct, see the enums').
#[macro_export]
#[doc(hidden)]
macro_rules! encode_struct {
    ($ty:ty { $($f:ident $(: $some:ident)?),* $(,)? }) => {
        impl $crate::json::lite::Encode for $ty {
            fn encode(&self, w: &mut $crate::json::lite::Writer) {
                let mut o = w.object();
                $($crate::encode_struct!(@field o self $f $($some)?);)*
                o.end();
            }
        }
    };
    (@field $o:ident $s:ident $f:ident) => { $o.field(stringify!($f), &$s.$f) };
    (@field $o:ident $s:ident $f:ident some) => { $o.some(stringify!($f), &$s.$f) };
}
pub use crate::encode_struct;

/// Both directions from one field list, for a message the clients write and read
/// (the sessions): `encode_struct!` writes every field (a `field: opt`, missing on
/// the wire, reads as its default but is always written, as serde's `default`
/// without `skip_serializing_if`), `decode_struct!` reads them as annotated.
#[macro_export]
#[doc(hidden)]
macro_rules! codec_struct {
    ($ty:ty $(, $deny:ident)? { $($f:ident $(: $opt:ident)?),* $(,)? }) => {
        $crate::encode_struct!($ty { $($f),* });
        $crate::decode_struct!($ty $(, $deny)? { $($f $(: $opt)?),* });
    };
}
pub use crate::codec_struct;

/// Differential checks for the tests: strings a message's text fields take in
/// the property tests (every escape serde_json makes, and what it leaves).
#[cfg(test)]
pub(crate) mod testing {
    use proptest::prelude::*;

    /// Any string, weighted to the characters JSON escapes or might: quotes,
    /// backslash, every control character, DEL, non-ASCII, U+2028/2029, astral.
    pub fn text() -> impl Strategy<Value = String> {
        let c = prop_oneof![
            3 => proptest::char::range(' ', '~'),
            2 => proptest::char::range('\0', '\u{1f}'),
            1 => Just('"'),
            1 => Just('\\'),
            1 => Just('/'),
            1 => Just('\u{7f}'),
            1 => Just('\u{2028}'),
            1 => Just('\u{2029}'),
            1 => Just('\u{e9}'),
            1 => Just('\u{1f600}'),
            1 => any::<char>(),
        ];
        proptest::collection::vec(c, 0..12).prop_map(|v| v.into_iter().collect())
    }

    /// Any bytes, short or long (hex fields).
    pub fn bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..40)
    }
}

/// Each message the clients write, generated (strings from [`testing::text`],
/// optional fields present and absent, every variant): [`encode`] gives
/// serde_json's bytes.
#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::testing::{bytes, text};
    use super::{encode, Encode};
    use crate::bridge_msg::{ApduHex, BridgeRequest, Id, Request};
    use crate::load::{
        BankResult, CreditResponseMsg, LoadDrawRequest, LoadRecoverRequest, LoadSession,
    };
    use crate::purchase::{
        DebitResponseMsg, DrawRequest, MerchantResult, RecoverRequest, SuspiciousReport,
    };
    use crate::session::{Session, VerifyMode};
    use crate::types::{PurseId, Terminal};
    use crate::wire::Hex;

    fn same<T: Encode + serde::Serialize>(v: &T) -> Result<(), TestCaseError> {
        prop_assert_eq!(encode(v), serde_json::to_string(v).unwrap());
        Ok(())
    }

    fn hex() -> impl Strategy<Value = Hex> {
        bytes().prop_map(Hex)
    }
    fn hexes() -> impl Strategy<Value = Vec<Hex>> {
        proptest::collection::vec(hex(), 0..4)
    }
    fn purse() -> impl Strategy<Value = PurseId> {
        prop::sample::select(PurseId::ALL.to_vec())
    }
    fn terminal() -> impl Strategy<Value = Terminal> {
        any::<[u8; 6]>().prop_map(Terminal)
    }

    #[test]
    fn escapes_are_serde_jsons() {
        // Every character below 0x80 and a few beyond, one by one.
        for c in (0u32..0x80).chain([0x2028, 0x2029, 0xe9, 0xfeff, 0x1f600]) {
            let s = char::from_u32(c).unwrap().to_string();
            assert_eq!(encode(&s), serde_json::to_string(&s).unwrap(), "U+{c:04X}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn scalars(s in text(), n in any::<u64>(), m in any::<u32>(), b in any::<bool>(),
                   o in proptest::option::of(text()), h in bytes()) {
            same(&s)?;
            same(&n)?;
            same(&m)?;
            same(&b)?;
            same(&o)?;
            same(&Hex(h.clone()))?;
            same(&ApduHex(h))?;
        }

        #[test]
        fn session(
            t in proptest::collection::vec(text(), 6),
            amount in any::<u32>(), currency in any::<u16>(), exponent in any::<u8>(),
            purse in purse(), expires_at in any::<u64>(),
            verify_mode in prop::sample::select(VerifyMode::ALL.to_vec()),
            terminal in terminal(), account_ref in text(),
        ) {
            same(&Session {
                merchant_id: t[0].clone(),
                merchant_name: t[1].clone(),
                txn_id: t[2].clone(),
                order_ref: t[3].clone(),
                amount,
                currency,
                exponent,
                purse,
                expires_at,
                verify_mode,
                result_url: t[4].clone(),
                origin: t[5].clone(),
                terminal,
            })?;
            same(&LoadSession {
                bank_id: t[5].clone(),
                bank_name: t[4].clone(),
                txn_id: t[3].clone(),
                account_ref,
                amount,
                currency,
                exponent,
                purse,
                expires_at,
                result_url: t[1].clone(),
                origin: t[0].clone(),
                terminal,
            })?;
        }

        #[test]
        fn purchase_requests(
            txn_id in text(), page_origin in text(), reason in text(),
            amount in any::<u32>(), purse in purse(), select in hex(), initialize in hex(),
            pin_verified in any::<bool>(), log in hexes(), response in hex(),
            initialize_load in proptest::option::of(hex()),
            balance_after in any::<u32>(), s3 in hex(),
        ) {
            same(&DrawRequest {
                txn_id: txn_id.clone(),
                page_origin: page_origin.clone(),
                amount,
                purse,
                select: select.clone(),
                initialize_load: initialize.clone(),
                initialize: initialize.clone(),
                pin_verified,
                log: log.clone(),
            })?;
            same(&DebitResponseMsg { txn_id: txn_id.clone(), response: response.clone() })?;
            same(&RecoverRequest { txn_id: txn_id.clone(), log, initialize_load })?;
            same(&SuspiciousReport {
                txn_id: txn_id.clone(),
                page_origin,
                reason,
            })?;
            same(&MerchantResult::ResultM { txn_id: txn_id.clone(), result_m: response })?;
            same(&MerchantResult::S3 {
                txn_id,
                balance_after,
                s3,
                expected_s3_m: select,
            })?;
        }

        #[test]
        fn load_requests(
            txn_id in text(), page_origin in text(), reason in text(),
            amount in any::<u32>(), purse in purse(), select in hex(), initialize in hex(),
            log in hexes(), response in hex(),
            card_answer in proptest::option::of(hex()),
            zero_initialize in proptest::option::of(hex()),
        ) {
            same(&LoadDrawRequest {
                txn_id: txn_id.clone(),
                page_origin,
                amount,
                purse,
                select,
                initialize,
                log: log.clone(),
            })?;
            same(&CreditResponseMsg { txn_id: txn_id.clone(), response: response.clone() })?;
            same(&LoadRecoverRequest {
                txn_id: txn_id.clone(),
                card_answer,
                zero_initialize,
                log,
            })?;
            same(&BankResult::ResultB { txn_id: txn_id.clone(), result_b: response })?;
            same(&BankResult::NotLoaded { txn_id, reason })?;
        }

        #[test]
        fn bridge_requests(
            num in any::<u64>(), s in text(), origin in proptest::option::of(text()),
            reader in proptest::option::of(text()), handle in any::<u32>(), apdu in bytes(),
            which in 0..7u8, by_num in any::<bool>(),
        ) {
            let body = match which {
                0 => BridgeRequest::Hello,
                1 => BridgeRequest::Status { reader: reader.clone() },
                2 => BridgeRequest::Readers,
                3 => BridgeRequest::Connect { reader: s.clone() },
                4 => BridgeRequest::Transmit { handle, apdu: ApduHex(apdu) },
                5 => BridgeRequest::Release { handle },
                _ => BridgeRequest::Disconnect { handle },
            };
            same(&body)?;
            let id = if by_num { Id::Num(num) } else { Id::Str(s) };
            same(&Request { id, origin, body })?;
        }
    }
}
