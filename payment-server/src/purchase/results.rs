//! Sealing the outcome for each party: result C under TSK for the shopper,
//! result M under DK for the merchant (the client never has DK, so it can
//! neither read nor forge result M).

use purse::apdu::StatusWord;
use purse::purchase::{CompleteResponse, PurchaseStatus, ResultC, ResultM};
use purse::session::Session;
use purse::wire::Sealed;

use super::{random12, SessionKeys};
use crate::card_ref::CardRefKey;
use crate::store::TxnRow;

/// Both results of a decided purchase.
pub(crate) fn seal_results(
    key: &CardRefKey,
    s: &Session,
    row: &TxnRow,
    status: PurchaseStatus,
    sw: Option<StatusWord>,
    keys: &SessionKeys,
) -> CompleteResponse {
    let date = String::from(row.date);
    let time = String::from(row.time);
    let c = ResultC {
        txn_id: row.txn_id.clone(),
        status,
        merchant_name: s.merchant_name.clone(),
        amount: row.amount,
        currency: row.currency,
        exponent: row.exponent,
        balance_after: (status == PurchaseStatus::Debited).then_some(row.balance_after),
        card_sw: sw.map(|w| format!("{:04X}", w.0)),
        date: date.clone(),
        time: time.clone(),
    };
    let m = ResultM {
        merchant_id: row.merchant_id.clone(),
        txn_id: row.txn_id.clone(),
        order_ref: row.order_ref.clone(),
        status,
        amount: row.amount,
        currency: row.currency,
        exponent: row.exponent,
        purse: row.purse,
        origin: row.origin.clone(),
        verify_mode: row.verify_mode,
        card: row.card_id.masked(),
        card_ref: key.card_ref(&row.merchant_id, &row.card_id),
        atc: row.atc,
        seq: row.seq,
        date,
        time,
    };
    CompleteResponse {
        txn_id: row.txn_id.clone(),
        status,
        result_c: c.seal(&keys.tsk, random12()),
        result_m: m.seal(&keys.dk, random12()),
    }
}
