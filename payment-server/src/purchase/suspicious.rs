//! `POST /v1/purchases/suspicious`: the shopper says "this is not my purchase".
//! Kept even for sessions never drawn, and sent to the merchant as a webhook.

use purse::merchant_api::TxnState;
use purse::purchase::{SuspiciousAck, SuspiciousEnvelope, SuspiciousReport};
use purse::webhook::{EventKind, WebhookEvent};
use purse::wire::Sealed;

use super::{sealed_error, PaymentService};
use crate::error::PaymentError;
use crate::store::outbox;

impl PaymentService {
    pub async fn suspicious(&self, env: SuspiciousEnvelope) -> Result<SuspiciousAck, PaymentError> {
        let s = env.session;
        let keys = self.open_session(&s, env.session_mac.as_slice(), env.etsk.as_slice(), false)?;
        let rep = SuspiciousReport::open(&keys.tsk, &s.txn_id, env.report.as_slice())
            .map_err(sealed_error)?;
        let reason: String = rep.reason.chars().take(500).collect();
        let origin: String = rep.page_origin.chars().take(200).collect();
        let now = self.now();
        tracing::warn!(txn = %s.txn_id, merchant = %s.merchant_id, "shopper reported a suspicious purchase");
        let row = self.store.get_txn(&s.merchant_id, &s.txn_id).await?;
        let webhook = self
            .merchant(&s.merchant_id)?
            .webhook_url
            .as_ref()
            .map(|_| match &row {
                Some(r) => r.event(
                    self.store.card_ref_key(),
                    EventKind::Suspicious,
                    r.state,
                    &reason,
                    now,
                ),
                None => WebhookEvent {
                    event_id: outbox::new_event_id(),
                    kind: EventKind::Suspicious,
                    created_at: now,
                    merchant_id: s.merchant_id.clone(),
                    txn_id: s.txn_id.clone(),
                    order_ref: s.order_ref.clone(),
                    state: TxnState::Created,
                    amount: s.amount,
                    currency: s.currency,
                    exponent: s.exponent,
                    purse: s.purse,
                    card: String::new(),
                    card_ref: String::new(),
                    atc: 0,
                    detail: reason.clone(),
                },
            });
        let queued = webhook.is_some();
        let txn_id = s.txn_id.clone();
        let new = self
            .store
            .record_suspicious(s.merchant_id, s.txn_id, origin, reason, now, webhook)
            .await?;
        if queued && new {
            self.webhooks.notify_one();
        }
        Ok(SuspiciousAck {
            txn_id,
            recorded: true,
        })
    }
}
