//! Cardpay's security module on a PKCS#11 token (tested on SoftHSM2 2.6.1).
//!
//! The issuer master keys MKP/MKL of each key version are token objects that
//! are sensitive, never extractable and usable only to derive. Card keys
//! (EMV option A), session keys and every S1/S2/S3 MAC (ISO 9797-1 alg. 3,
//! padding 2) are computed inside the token; [`Pkcs11Keys`] implements
//! [`purse::security_module::SessionMacs`], so
//! `SecurityModule::new(terminal, Box::new(keys))` puts the shared rules on top.
//!
//! # Layout
//! - [`config`]: module path, token label, PIN source, key labels (TOML).
//! - [`token`]: context, token lookup, login, every template, the guarded derive.
//! - `pool`: sessions shared by many threads under one login.
//! - [`keys`]: [`Pkcs11Keys`], the per-transaction derive and MAC chain.
//! - [`admin`]: `hsm import` / `hsm generate` / `hsm list`.
//! - [`softhsm`]: a throw-away SoftHSM2 token for tests and benchmarks.
//!
//! docs/pkcs11.md explains the mechanisms, the SoftHSM caveat and operations.

pub mod admin;
pub mod config;
pub mod error;
pub mod keys;
mod pool;
pub mod softhsm;
pub mod token;

pub use admin::{
    generate_master_keys, import_master_keys, list_master_keys, Kcv, MasterKeyInfo, MasterKeyReport,
};
pub use config::{KeyLabels, PinSource, Pkcs11Config};
pub use error::Pkcs11Error;
pub use keys::Pkcs11Keys;
