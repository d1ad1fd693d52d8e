//! The bank's signed calls — a load's view, and the void of a load never
//! drawn — and the sweeper of silent loads.

use purse::load::bank_api::LoadView;

use crate::error::PaymentError;
use crate::purchase::PaymentService;

impl PaymentService {
    /// `GET /v1/bank/loads/{txn}`: a bank sees its own loads.
    pub async fn bank_load(&self, bank_id: &str, txn_id: &str) -> Result<LoadView, PaymentError> {
        self.store.load_view(bank_id, txn_id).await
    }

    /// `POST /v1/bank/loads/{txn}/void`: a load never drawn becomes `voided`
    /// and can never be drawn (the bank releases its hold); a drawn one is
    /// answered as it stands (the bank keeps holding until the card decides).
    pub async fn bank_void(&self, bank_id: &str, txn_id: &str) -> Result<LoadView, PaymentError> {
        if !crate::ids::ok(txn_id) {
            return Err(PaymentError::Malformed(format!(
                "txn_id: {}",
                crate::ids::RULE
            )));
        }
        let webhook = self
            .banks
            .get(bank_id)
            .is_some_and(|b| b.webhook_url.is_some());
        let row = self
            .store
            .void_load(bank_id.to_string(), txn_id.to_string(), self.now(), webhook)
            .await?;
        if webhook {
            self.webhooks.notify_one();
        }
        tracing::info!(bank = %bank_id, txn = %txn_id, state = row.state.as_str(), "void asked");
        self.store.load_view(bank_id, txn_id).await
    }

    /// Move `drawn` loads past their session expiry plus the grace period to
    /// `unknown`.
    pub async fn sweep_loads(&self) -> Result<usize, PaymentError> {
        let n = self
            .store
            .sweep_loads(self.now(), self.recovery_grace_secs)
            .await?;
        if n > 0 {
            tracing::info!(moved = n, "drawn loads past expiry are now unknown");
        }
        Ok(n)
    }

    /// Sum of credited loads of a bank (what the bank has debited).
    pub async fn bank_credited_total(&self, bank_id: &str) -> Result<u64, PaymentError> {
        self.store.bank_credited_total(bank_id).await
    }
}
