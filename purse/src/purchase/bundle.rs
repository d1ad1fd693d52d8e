//! What the merchant page hands the widget (`Cardpay.mount(el, {session: …})`).
//!
//! # Format
//! `{"session": {…}, "session_mac": "<hex 32>", "etsk": "<hex>", "tsk": "<hex 32>"}`
//! (`ETSK`/`TSK` are accepted as aliases). TSK is the widget's key for this
//! one transaction; the merchant made it and wrapped it as ETSK for the server.

use serde::{Deserialize, Serialize};

use crate::session::{Key32, Session};
use crate::wire::Hex;

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WidgetSession {
    pub session: Session,
    /// HMAC-SHA256(K_mp, canonical session || ETSK).
    pub session_mac: Hex,
    /// TSK sealed under DK (label `etsk`).
    #[serde(alias = "ETSK")]
    pub etsk: Hex,
    /// The transaction session key (32 bytes).
    #[serde(alias = "TSK")]
    pub tsk: Hex,
}

crate::json::lite::decode_struct!(WidgetSession {
    session,
    session_mac,
    etsk | "ETSK",
    tsk | "TSK",
});

impl WidgetSession {
    /// TSK as a key, if it is 32 bytes.
    pub fn tsk(&self) -> Option<Key32> {
        Key32::from_slice(self.tsk.as_slice()).ok()
    }
}

impl core::fmt::Debug for WidgetSession {
    // Never print TSK.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WidgetSession")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::lite::testing::differential;

    /// What the widget reads the page's bundle with (`json::lite::decode`) takes what
    /// serde's derive (the merchant's server side, the demo) takes, as the same value:
    /// required fields, `order_ref`'s default, the `ETSK`/`TSK` aliases, doubles.
    #[test]
    fn bundle_decoder_agrees_with_serde() {
        let mut session = crate::purchase::draw::tests::session();
        session.order_ref = "o-1".into();
        let b = WidgetSession {
            session,
            session_mac: Hex(vec![0xab; 4]),
            etsk: Hex(vec![1, 2]),
            tsk: Hex(vec![0xcd; 32]),
        };
        let names = ["ETSK", "TSK", "etsk", "order_ref", "verify_mode", "bank_id"];
        let n = differential(&b, &names, 4000, 0x5eed);
        assert!(n > 200, "only {n} of 4000 accepted");
    }
}
