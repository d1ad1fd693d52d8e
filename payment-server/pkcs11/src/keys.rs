//! [`Pkcs11Keys`]: the [`SessionMacs`] backend whose keys live in a PKCS#11 token.
//!
//! Per call, inside the token (session objects, destroyed after use):
//! 1. card key `K = derive(MK, id || id XOR FF..FF)` — EMV option A; SoftHSM
//!    sets DES parity on derived keys, so K equals `purse::crypto::diversify` bit for bit;
//! 2. `SK = derive(K, R||ATC||F0||P2 || R||ATC||0F||P2)` and
//!    `SKL = derive(K, R||ATC||F0||P2 || R||ATC||F0||P2)`, i.e. K1||K1 with K1 the left half of SK
//!    (the blocks of `purse::crypto::session_key_data`);
//! 3. per message, padded by ISO 9797-1 method 2 into blocks B1..Bn:
//!    `H = last block of 3DES-CBC(SKL, IV 0, B1..Bn-1)` (single DES CBC under K1,
//!    since K1||K1 is single DES; H = 0 when n = 1), then
//!    `MAC = 3DES-CBC(SK, IV H, Bn)` — ISO 9797-1 MAC algorithm 3, without
//!    the single-DES mechanisms SoftHSM lacks.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use cryptoki::mechanism::Mechanism;
use cryptoki::object::ObjectHandle;
use cryptoki::session::Session;
use purse::crypto::{self, pad_method_2};
use purse::security_module::{KeyUse, SecurityModuleError, SessionMacs};
use purse::{CardId, PurseId};

use crate::config::{KeyLabels, Pkcs11Config};
use crate::error::Pkcs11Error;
use crate::pool::SessionPool;
use crate::token::{self, DerivedUse, Ephemeral, MasterPair};

/// The security module's keys in a PKCS#11 token. Cheap to clone (one pool,
/// one login, shared); `Send + Sync`, for many tokio tasks at once.
#[derive(Clone)]
pub struct Pkcs11Keys {
    inner: Arc<Inner>,
}

struct Inner {
    pool: SessionPool,
    labels: KeyLabels,
    /// Key versions with both master keys present and protected.
    masters: RwLock<BTreeMap<u8, MasterPair>>,
}

impl std::fmt::Debug for Pkcs11Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Keys")
            .field("key_versions", &self.key_versions())
            .finish_non_exhaustive()
    }
}

impl Pkcs11Keys {
    /// Load the module, find the token, log in (PIN from `cfg.pin`), check the
    /// mechanisms, and find the master keys. A key version counts only if both
    /// MKP and MKL are there and protected (sensitive, never extractable,
    /// derive only); an unprotected master key is an error, not skipped.
    pub fn open(cfg: &Pkcs11Config) -> Result<Self, Pkcs11Error> {
        cfg.key_labels.validate()?;
        let pin = cfg.pin.read()?;
        let ctx = token::context(&cfg.module)?;
        let slot = token::find_token(&ctx, &cfg.token_label)?;
        token::require_mechanisms(&ctx, slot)?;
        let pool = SessionPool::new(ctx, slot, pin, cfg.max_sessions)?;
        let keys = Self {
            inner: Arc::new(Inner {
                pool,
                labels: cfg.key_labels.clone(),
                masters: RwLock::new(BTreeMap::new()),
            }),
        };
        keys.refresh()?;
        tracing::info!(
            token = %cfg.token_label,
            key_versions = ?keys.key_versions(),
            "PKCS#11 security module ready"
        );
        Ok(keys)
    }

    /// Look the master keys up again (after `hsm import`/`generate` by another
    /// process). Returns the usable key versions.
    pub fn refresh(&self) -> Result<Vec<u8>, Pkcs11Error> {
        let labels = &self.inner.labels;
        let found = self.inner.pool.with_session(|s| {
            let all = token::find_master_keys(s, labels)?;
            let mut usable = BTreeMap::new();
            for (v, pair) in all {
                let (Some(mkp), Some(mkl)) = (pair.mkp, pair.mkl) else {
                    tracing::warn!(
                        key_version = v,
                        "only one of MKP/MKL is in the token; key version unusable"
                    );
                    continue;
                };
                token::check_master_key(s, mkp, &labels.label(KeyUse::Purchase, v))?;
                token::check_master_key(s, mkl, &labels.label(KeyUse::Load, v))?;
                usable.insert(v, pair);
            }
            Ok(usable)
        })?;
        let versions = found.keys().copied().collect();
        *self
            .inner
            .masters
            .write()
            .unwrap_or_else(|p| p.into_inner()) = found;
        Ok(versions)
    }

    /// Sessions the pool has open (for the benchmark and tests).
    pub fn open_sessions(&self) -> usize {
        self.inner.pool.open_sessions()
    }

    fn master(&self, key: KeyUse, version: u8) -> Option<ObjectHandle> {
        self.inner
            .masters
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&version)
            .and_then(|p| p.get(key))
    }

    /// [`SessionMacs::session_macs`] with the token's own error.
    #[allow(clippy::too_many_arguments)]
    pub fn try_session_macs(
        &self,
        key: KeyUse,
        key_version: u8,
        card_id: &CardId,
        random: [u8; 4],
        atc: u16,
        purse: PurseId,
        messages: &[&[u8]],
    ) -> Result<Option<Vec<[u8; 8]>>, Pkcs11Error> {
        let Some(mk) = self.master(key, key_version) else {
            return Ok(None);
        };
        let sk_data = crypto::session_key_data(random, atc, purse);
        self.inner
            .pool
            .with_session(|s| session_macs_in(s, mk, card_id, sk_data, messages))
            .map(Some)
    }
}

impl SessionMacs for Pkcs11Keys {
    fn key_versions(&self) -> Vec<u8> {
        self.inner
            .masters
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect()
    }

    fn session_macs(
        &self,
        key: KeyUse,
        key_version: u8,
        card_id: &CardId,
        random: [u8; 4],
        atc: u16,
        purse: PurseId,
        messages: &[&[u8]],
    ) -> Result<Vec<[u8; 8]>, SecurityModuleError> {
        match self.try_session_macs(key, key_version, card_id, random, atc, purse, messages) {
            Ok(Some(macs)) => Ok(macs),
            Ok(None) => Err(SecurityModuleError::UnknownKeyVersion(key_version)),
            Err(e) => {
                tracing::error!(error = %e, "PKCS#11 security module failed");
                Err(SecurityModuleError::Backend(e.to_string()))
            }
        }
    }
}

/// The whole per-transaction chain on one session (module docs).
fn session_macs_in(
    s: &Session,
    mk: ObjectHandle,
    card_id: &CardId,
    [left, right]: [[u8; 8]; 2],
    messages: &[&[u8]],
) -> Result<Vec<[u8; 8]>, Pkcs11Error> {
    // The same blocks as the software module (purse::crypto), encrypted inside the token.
    let [id, inv] = crypto::diversification_data(card_id);
    let mut div = [0u8; 16];
    div[..8].copy_from_slice(&id);
    div[8..].copy_from_slice(&inv);
    let card_key = Ephemeral::derive(s, mk, &div, DerivedUse::CardKey)?;

    let mut sk_data = [0u8; 16];
    sk_data[..8].copy_from_slice(&left);
    sk_data[8..].copy_from_slice(&right);
    let mut skl_data = [0u8; 16];
    skl_data[..8].copy_from_slice(&left);
    skl_data[8..].copy_from_slice(&left);
    let sk = Ephemeral::derive(s, card_key.handle(), &sk_data, DerivedUse::MacKey)?;
    let skl = Ephemeral::derive(s, card_key.handle(), &skl_data, DerivedUse::MacKey)?;
    drop(card_key);

    messages
        .iter()
        .map(|m| retail_mac(s, sk.handle(), skl.handle(), m))
        .collect()
}

/// ISO/IEC 9797-1 MAC algorithm 3 with padding method 2, from 3DES-CBC only.
fn retail_mac(
    s: &Session,
    sk: ObjectHandle,
    skl: ObjectHandle,
    message: &[u8],
) -> Result<[u8; 8], Pkcs11Error> {
    let blocks = pad_method_2(message);
    let (head, last) = blocks.split_at(blocks.len() - 8);
    let mut h = [0u8; 8];
    if !head.is_empty() {
        let c = s.encrypt(&Mechanism::Des3Cbc([0; 8]), skl, head)?;
        h.copy_from_slice(&c[c.len() - 8..]);
    }
    let c = s.encrypt(&Mechanism::Des3Cbc(h), sk, last)?;
    c.as_slice()
        .try_into()
        .map_err(|_| Pkcs11Error::TokenMisbehaved("3DES-CBC of one block is not one block"))
}
