//! Delivery of the webhook outbox: sign each event under the merchant's
//! `K_wh`, POST it to the merchant's `webhook_url`, and mark it delivered on
//! a 2xx answer; otherwise retry with exponential backoff (1 s, 2 s, 4 s, …
//! up to `webhook_max_backoff_secs`), across restarts (the schedule is in the
//! database). Due rows are leased, so several deliverers never send one event
//! at the same time.

use std::sync::Arc;
use std::time::Duration;

use purse::webhook::{self, HEADER_EVENT_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};

use crate::error::PaymentError;
use crate::purchase::PaymentService;
use crate::store::outbox::Audience;

/// How long a leased event is ours before another deliverer may take it.
const LEASE_SECS: u64 = 60;
/// Events taken per pass.
const BATCH: u32 = 32;

/// Delivery settings.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub timeout: Duration,
    pub max_backoff_secs: u64,
    /// Time between passes when nothing wakes the deliverer.
    pub idle: Duration,
}

impl Default for Delivery {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_backoff_secs: 300,
            idle: Duration::from_secs(1),
        }
    }
}

/// Seconds to wait after the `attempts`-th failed delivery.
pub fn backoff(attempts: u32, max: u64) -> u64 {
    1u64.checked_shl(attempts.min(20))
        .unwrap_or(u64::MAX)
        .min(max)
}

/// One pass: deliver what is due now. Returns how many were acknowledged.
pub async fn deliver_due(
    service: &PaymentService,
    client: &reqwest::Client,
    cfg: &Delivery,
) -> Result<usize, PaymentError> {
    let now = service.now();
    let due = service
        .store()
        .lease_webhooks(now, LEASE_SECS, BATCH)
        .await?;
    let mut delivered = 0;
    for d in due {
        let target = match d.audience {
            Audience::Merchant => service
                .merchants
                .get(&d.merchant_id)
                .map(|m| (&m.webhook_url, &m.webhook_key)),
            Audience::Bank => service
                .banks
                .get(&d.merchant_id)
                .map(|b| (&b.webhook_url, &b.webhook_key)),
        };
        let outcome = match target {
            Some((url, key)) => match url {
                Some(url) => {
                    let ts = service.now();
                    let sig = webhook::sign(key, ts, &d.event_id, d.body.as_bytes());
                    client
                        .post(url)
                        .timeout(cfg.timeout)
                        .header("content-type", "application/json")
                        .header(HEADER_EVENT_ID, &d.event_id)
                        .header(HEADER_TIMESTAMP, ts.to_string())
                        .header(HEADER_SIGNATURE, sig)
                        .body(d.body.clone())
                        .send()
                        .await
                        .map_err(|e| format!("{e}"))
                        .and_then(|r| {
                            if r.status().is_success() {
                                Ok(())
                            } else {
                                Err(format!("HTTP {}", r.status()))
                            }
                        })
                }
                None => Err("recipient has no webhook_url".into()),
            },
            None => Err("recipient no longer configured".into()),
        };
        let now = service.now();
        let id = d.id;
        match outcome {
            Ok(()) => {
                service.store().webhook_delivered(id, now).await?;
                delivered += 1;
                tracing::debug!(event = %d.event_id, merchant = %d.merchant_id, "webhook delivered");
            }
            Err(e) => {
                let next = now + backoff(d.attempts, cfg.max_backoff_secs);
                tracing::warn!(event = %d.event_id, merchant = %d.merchant_id, attempts = d.attempts + 1, error = %e, retry_at = next, "webhook not acknowledged");
                service.store().webhook_failed(id, next, e).await?;
            }
        }
    }
    Ok(delivered)
}

/// Run delivery until the process ends: a pass whenever an event is queued,
/// and at least every `idle`. `client` is the config's `webhook_client`
/// (rustls; the system's roots plus the config's `ca_file`).
pub fn spawn(
    service: Arc<PaymentService>,
    cfg: Delivery,
    client: reqwest::Client,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(e) = deliver_due(&service, &client, &cfg).await {
                tracing::error!(error = %e, "webhook delivery pass failed");
            }
            let _ = tokio::time::timeout(cfg.idle, service.webhooks.notified()).await;
        }
    })
}

/// Run the recovery sweeper until the process ends.
pub fn spawn_sweeper(service: Arc<PaymentService>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(e) = service.sweep().await {
                tracing::error!(error = %e, "recovery sweep failed");
            }
            if let Err(e) = service.sweep_loads().await {
                tracing::error!(error = %e, "load sweep failed");
            }
            tokio::time::sleep(every).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0, 300), 1);
        assert_eq!(backoff(1, 300), 2);
        assert_eq!(backoff(5, 300), 32);
        assert_eq!(backoff(9, 300), 300);
        assert_eq!(backoff(u32::MAX, 300), 300);
    }
}
