//! Errors of the PKCS#11 security module, grouped by who failed: the
//! configuration (PIN source, labels), the token (missing, wrong PIN, lacking
//! mechanisms or keys), a key that is not protected as it must be, or a
//! refused request. No variant ever carries a PIN or key bytes.

use std::path::PathBuf;

use cryptoki::error::{Error as CkError, RvError};

#[derive(Debug, thiserror::Error)]
pub enum Pkcs11Error {
    /// The configuration is unusable (labels, sizes).
    #[error("PKCS#11 configuration: {0}")]
    Config(String),
    /// The PIN's environment variable is not set.
    #[error("token PIN: environment variable {0} is not set")]
    PinEnvMissing(String),
    /// The PIN file could not be read.
    #[error("token PIN: cannot read {path}: {reason}")]
    PinFile { path: PathBuf, reason: String },
    /// The PIN source holds an empty PIN.
    #[error("token PIN is empty")]
    PinEmpty,
    /// The PKCS#11 library did not load or initialise.
    #[error("cannot load PKCS#11 module {path}: {reason}")]
    ModuleLoad { path: PathBuf, reason: String },
    /// No token carries the configured label.
    #[error("no PKCS#11 token labelled {0:?}")]
    TokenNotFound(String),
    /// Several tokens carry the label; refusing to guess.
    #[error("{count} PKCS#11 tokens are labelled {label:?}")]
    TokenAmbiguous { label: String, count: usize },
    /// C_Login said the PIN is wrong.
    #[error("wrong token PIN")]
    WrongPin,
    /// The token locked the user PIN.
    #[error("the token's user PIN is locked")]
    PinLocked,
    /// The token lacks a mechanism the module needs.
    #[error("the token lacks mechanism {0}")]
    MechanismMissing(&'static str),
    /// Import or generate would overwrite a master key.
    #[error("master key {0:?} exists already; use a new key version")]
    KeyExists(String),
    /// A master key object is readable, extractable or usable for more than derive.
    #[error("master key {label:?} is not protected: {reason}")]
    KeyNotProtected { label: String, reason: &'static str },
    /// A derive template that would make a readable or persistent key.
    #[error("refused derive template: {0}")]
    UnprotectedTemplate(&'static str),
    /// The token's check value of an imported key differs from the key given.
    #[error("master key {0:?}: the token's check value differs from the key given")]
    KcvMismatch(String),
    /// The token answered something PKCS#11 does not allow (wrong output size).
    #[error("the token misbehaved: {0}")]
    TokenMisbehaved(&'static str),
    /// Any other PKCS#11 failure (function and return value, never data).
    #[error("PKCS#11: {0}")]
    Token(#[from] CkError),
}

impl Pkcs11Error {
    /// The token's return value, if the token answered one.
    pub fn rv(&self) -> Option<RvError> {
        match self {
            Pkcs11Error::Token(CkError::Pkcs11(rv, _)) => Some(*rv),
            _ => None,
        }
    }
}
