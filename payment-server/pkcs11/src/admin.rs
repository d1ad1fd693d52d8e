//! Admin functions behind `payment-server hsm import|generate|list`: put the
//! master keys of a key version into the token, or make fresh ones there, and
//! report only their key check values (KCV = first 3 bytes of 3DES of a zero
//! block). A key version is written whole or not at all: if MKL fails, the MKP
//! just created is destroyed again. Existing keys are never overwritten.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::ObjectHandle;
use cryptoki::session::Session;
use purse::crypto::DesKey;
use purse::security_module::KeyUse;
use zeroize::Zeroize;

use crate::config::Pkcs11Config;
use crate::error::Pkcs11Error;
use crate::token::{self, TokenSession};

/// A key check value: first 3 bytes of 3DES_K(00..00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kcv(pub [u8; 3]);

impl Kcv {
    /// The KCV of a key held in software (to compare with the token's).
    pub fn of(key: &DesKey) -> Self {
        let c = key.encrypt_block([0; 8]);
        Self([c[0], c[1], c[2]])
    }
}

impl std::fmt::Display for Kcv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode_upper(self.0))
    }
}

/// What `import`/`generate` made: the key version and the token's KCVs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MasterKeyReport {
    pub key_version: u8,
    pub mkp_kcv: Option<Kcv>,
    pub mkl_kcv: Option<Kcv>,
}

impl std::fmt::Display for MasterKeyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let k = |k: Option<Kcv>| k.map_or("(token gives none)".to_string(), |k| k.to_string());
        write!(
            f,
            "key version {}: MKP KCV {}, MKL KCV {}",
            self.key_version,
            k(self.mkp_kcv),
            k(self.mkl_kcv)
        )
    }
}

/// One master key object found on the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterKeyInfo {
    pub key_version: u8,
    pub key: KeyUse,
    pub label: String,
    pub kcv: Option<Kcv>,
    /// `None` if sensitive, never extractable and derive-only; else why not.
    pub unprotected: Option<String>,
}

/// Import MKP and MKL of `key_version` (e.g. parsed from hex with
/// `DesKey::from_hex`). The token's KCV must equal the KCV of the key given,
/// so a typo in the hex cannot become a master key silently.
pub fn import_master_keys(
    cfg: &Pkcs11Config,
    key_version: u8,
    mkp: &DesKey,
    mkl: &DesKey,
) -> Result<MasterKeyReport, Pkcs11Error> {
    for k in [mkp, mkl] {
        let b = k.bytes();
        if b[..8] == b[8..] {
            return Err(Pkcs11Error::Config(
                "a master key's two halves are equal (that is single DES)".into(),
            ));
        }
    }
    if mkp == mkl {
        return Err(Pkcs11Error::Config("MKP and MKL must differ".into()));
    }
    write_pair(cfg, key_version, |s, key, template| {
        let value = match key {
            KeyUse::Purchase => mkp,
            KeyUse::Load => mkl,
        };
        let mut template = template;
        template.push(cryptoki::object::Attribute::Value(value.bytes().to_vec()));
        let made = s.create_object(&template);
        for a in &mut template {
            if let cryptoki::object::Attribute::Value(v) = a {
                v.zeroize();
            }
        }
        let h = made?;
        Ok((h, Some(Kcv::of(value))))
    })
}

/// Generate fresh MKP and MKL of `key_version` inside the token; their values
/// are never known outside it. Report their KCVs.
pub fn generate_master_keys(
    cfg: &Pkcs11Config,
    key_version: u8,
) -> Result<MasterKeyReport, Pkcs11Error> {
    write_pair(cfg, key_version, |s, _key, template| {
        Ok((s.generate_key(&Mechanism::Des2KeyGen, &template)?, None))
    })
}

/// The master key objects on the token (any key version), with KCVs.
pub fn list_master_keys(cfg: &Pkcs11Config) -> Result<Vec<MasterKeyInfo>, Pkcs11Error> {
    let ts = TokenSession::open(cfg, false)?;
    let s = ts.session();
    let mut out = Vec::new();
    for (v, pair) in token::find_master_keys(s, &cfg.key_labels)? {
        for key in [KeyUse::Purchase, KeyUse::Load] {
            let Some(h) = pair.get(key) else { continue };
            let label = cfg.key_labels.label(key, v);
            let unprotected = match token::check_master_key(s, h, &label) {
                Ok(()) => None,
                Err(Pkcs11Error::KeyNotProtected { reason, .. }) => Some(reason.to_string()),
                Err(e) => return Err(e),
            };
            out.push(MasterKeyInfo {
                key_version: v,
                key,
                kcv: token::check_value(s, h)?.map(Kcv),
                label,
                unprotected,
            });
        }
    }
    Ok(out)
}

/// Make MKP then MKL with `make`, check both, roll back on any failure.
fn write_pair(
    cfg: &Pkcs11Config,
    key_version: u8,
    make: impl Fn(
        &Session,
        KeyUse,
        Vec<cryptoki::object::Attribute>,
    ) -> Result<(ObjectHandle, Option<Kcv>), Pkcs11Error>,
) -> Result<MasterKeyReport, Pkcs11Error> {
    let ts = TokenSession::open(cfg, true)?;
    token::require_mechanisms(ts.context(), ts.slot())?;
    let s = ts.session();
    let labels = [KeyUse::Purchase, KeyUse::Load].map(|k| cfg.key_labels.label(k, key_version));
    for l in &labels {
        if token::find_key(s, l)?.is_some() {
            return Err(Pkcs11Error::KeyExists(l.clone()));
        }
    }
    let mut made: Vec<ObjectHandle> = Vec::new();
    let result = (|| {
        let mut kcvs = [None, None];
        for (i, key) in [KeyUse::Purchase, KeyUse::Load].into_iter().enumerate() {
            let id = [
                match key {
                    KeyUse::Purchase => b'P',
                    KeyUse::Load => b'L',
                },
                key_version,
            ];
            let template = token::master_key_template(&labels[i], &id);
            let (h, expected) = make(s, key, template)?;
            made.push(h);
            token::check_master_key(s, h, &labels[i])?;
            let kcv = token::check_value(s, h)?.map(Kcv);
            if let (Some(want), Some(got)) = (expected, kcv) {
                if want != got {
                    return Err(Pkcs11Error::KcvMismatch(labels[i].clone()));
                }
            }
            kcvs[i] = kcv;
        }
        Ok(MasterKeyReport {
            key_version,
            mkp_kcv: kcvs[0],
            mkl_kcv: kcvs[1],
        })
    })();
    match result {
        Ok(r) => {
            tracing::info!(%r, "master keys written to the token");
            Ok(r)
        }
        Err(e) => {
            for h in made {
                if let Err(d) = s.destroy_object(h) {
                    tracing::error!(error = %d, "could not roll back a half-written master key");
                }
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kcv_of_the_team_test_key() {
        // TEST KEY (docs/TEAM.md); SoftHSM reports 8BAF47 for it as well.
        let k = DesKey::from_hex("404142434445464748494A4B4C4D4E4F").unwrap();
        assert_eq!(Kcv::of(&k).to_string(), "8BAF47");
    }
}
