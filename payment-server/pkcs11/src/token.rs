//! The token boundary: one PKCS#11 context per library per process, finding
//! the token, logging in, and the only places keys are made or derived. Every
//! template is built here; [`derive_protected`] is the one way this crate
//! derives, and it refuses any template that would make a readable,
//! extractable or persistent key (SoftHSM 2.6.1 would honour one: a PIN holder
//! can derive a readable copy of a master key, see docs/pkcs11.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::vendor_defined::VendorDefinedMechanism;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{
    Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use purse::security_module::KeyUse;

use crate::config::{KeyLabels, Pkcs11Config};
use crate::error::Pkcs11Error;

/// `CKM_DES3_ECB_ENCRYPT_DATA`: derive a key whose value is the 3DES-ECB
/// encryption of the given data under the base key. cryptoki 0.12 has no
/// constant for it.
pub const DES3_ECB_ENCRYPT_DATA: MechanismType = {
    const _: () = assert!(
        std::mem::size_of::<MechanismType>()
            == std::mem::size_of::<cryptoki_sys::CK_MECHANISM_TYPE>()
    );
    // SAFETY: `MechanismType` is `#[repr(transparent)]` over `CK_MECHANISM_TYPE`
    // (cryptoki itself hands `Vec<MechanismType>` to C as a `CK_MECHANISM_TYPE`
    // array), and any value is a valid mechanism number.
    unsafe {
        std::mem::transmute::<cryptoki_sys::CK_MECHANISM_TYPE, MechanismType>(
            cryptoki_sys::CKM_DES3_ECB_ENCRYPT_DATA,
        )
    }
};

static CONTEXTS: Mutex<Vec<(PathBuf, Pkcs11)>> = Mutex::new(Vec::new());

/// The process's context for one PKCS#11 library, loaded and initialised once
/// (C_Initialize may run only once per process; it is never finalised).
pub fn context(module: &Path) -> Result<Pkcs11, Pkcs11Error> {
    let mut all = CONTEXTS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, c)) = all.iter().find(|(p, _)| p == module) {
        return Ok(c.clone());
    }
    let load_err = |reason: String| Pkcs11Error::ModuleLoad {
        path: module.to_owned(),
        reason,
    };
    let ctx = Pkcs11::new(module).map_err(|e| load_err(e.to_string()))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(load_err(e.to_string())),
    }
    all.push((module.to_owned(), ctx.clone()));
    Ok(ctx)
}

/// The slot of the one token carrying `label`.
pub fn find_token(ctx: &Pkcs11, label: &str) -> Result<Slot, Pkcs11Error> {
    let mut found = Vec::new();
    for slot in ctx.get_slots_with_token()? {
        let info = ctx.get_token_info(slot)?;
        if info.label().trim_end() == label {
            found.push(slot);
        }
    }
    match found.as_slice() {
        [] => Err(Pkcs11Error::TokenNotFound(label.into())),
        [one] => Ok(*one),
        many => Err(Pkcs11Error::TokenAmbiguous {
            label: label.into(),
            count: many.len(),
        }),
    }
}

/// Log the user in unless this process already is (PKCS#11 login is per
/// application and token: the first session's login holds for all).
pub fn login(session: &Session, pin: &AuthPin) -> Result<(), Pkcs11Error> {
    if matches!(
        session.get_session_info()?.session_state(),
        SessionState::RoUser | SessionState::RwUser
    ) {
        return Ok(());
    }
    match session.login(UserType::User, Some(pin)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(CkError::Pkcs11(
            RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange,
            _,
        )) => Err(Pkcs11Error::WrongPin),
        Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(Pkcs11Error::PinLocked),
        Err(e) => Err(e.into()),
    }
}

/// The token must derive with `CKM_DES3_ECB_ENCRYPT_DATA` and encrypt with
/// `CKM_DES3_CBC`; nothing else is used after the keys exist.
pub fn require_mechanisms(ctx: &Pkcs11, slot: Slot) -> Result<(), Pkcs11Error> {
    let has = |m: MechanismType, want: fn(&cryptoki::mechanism::MechanismInfo) -> bool| match ctx
        .get_mechanism_info(slot, m)
    {
        Ok(info) => Ok(want(&info)),
        Err(CkError::Pkcs11(RvError::MechanismInvalid, _)) => Ok(false),
        Err(e) => Err(Pkcs11Error::from(e)),
    };
    if !has(DES3_ECB_ENCRYPT_DATA, |i| i.derive())? {
        return Err(Pkcs11Error::MechanismMissing("CKM_DES3_ECB_ENCRYPT_DATA"));
    }
    if !has(MechanismType::DES3_CBC, |i| i.encrypt())? {
        return Err(Pkcs11Error::MechanismMissing("CKM_DES3_CBC"));
    }
    Ok(())
}

/// A logged-in session on the configured token, for the admin functions and
/// for tests that inspect the token. The server itself uses the session pool.
pub struct TokenSession {
    ctx: Pkcs11,
    slot: Slot,
    session: Session,
}

impl TokenSession {
    /// Open a session (read-write if `rw`) on the configured token and log in.
    pub fn open(cfg: &Pkcs11Config, rw: bool) -> Result<Self, Pkcs11Error> {
        cfg.key_labels.validate()?;
        let pin = cfg.pin.read()?;
        let ctx = context(&cfg.module)?;
        let slot = find_token(&ctx, &cfg.token_label)?;
        let session = if rw {
            ctx.open_rw_session(slot)?
        } else {
            ctx.open_ro_session(slot)?
        };
        login(&session, &pin)?;
        Ok(Self { ctx, slot, session })
    }

    pub fn session(&self) -> &Session {
        &self.session
    }
    pub fn context(&self) -> &Pkcs11 {
        &self.ctx
    }
    pub fn slot(&self) -> Slot {
        self.slot
    }
}

/// A master key object's handle, found by its label.
pub fn find_key(session: &Session, label: &str) -> Result<Option<ObjectHandle>, Pkcs11Error> {
    let found = session.find_objects(&[
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::Label(label.as_bytes().to_vec()),
    ])?;
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        _ => Err(Pkcs11Error::Config(format!(
            "several objects are labelled {label:?}"
        ))),
    }
}

/// Master key handles of one key version.
#[derive(Debug, Clone, Copy, Default)]
pub struct MasterPair {
    pub mkp: Option<ObjectHandle>,
    pub mkl: Option<ObjectHandle>,
}

impl MasterPair {
    pub fn get(&self, key: KeyUse) -> Option<ObjectHandle> {
        match key {
            KeyUse::Purchase => self.mkp,
            KeyUse::Load => self.mkl,
        }
    }
    fn set(&mut self, key: KeyUse, h: ObjectHandle) {
        match key {
            KeyUse::Purchase => self.mkp = Some(h),
            KeyUse::Load => self.mkl = Some(h),
        }
    }
}

/// Every master key object on the token whose label matches `labels`, by key
/// version (a version may have only one of its two keys).
pub fn find_master_keys(
    session: &Session,
    labels: &KeyLabels,
) -> Result<BTreeMap<u8, MasterPair>, Pkcs11Error> {
    let mut out = BTreeMap::<u8, MasterPair>::new();
    for h in session.find_objects(&[
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::Token(true),
    ])? {
        let attrs = session.get_attributes(h, &[AttributeType::Label])?;
        let Some(Attribute::Label(l)) = attrs.first() else {
            continue;
        };
        let Ok(l) = std::str::from_utf8(l) else {
            continue;
        };
        if let Some((key, v)) = labels.parse(l) {
            out.entry(v).or_default().set(key, h);
        }
    }
    Ok(out)
}

/// The template of a master key (MKP or MKL) on the token: 2-key 3DES, private,
/// sensitive, never extractable, unmodifiable, uncopyable, usable only to
/// derive card keys with `CKM_DES3_ECB_ENCRYPT_DATA`. An import adds `CKA_VALUE`.
pub fn master_key_template(label: &str, id: &[u8]) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::DES2),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.to_vec()),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Derive(true),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Modifiable(false),
        Attribute::Copyable(false),
        Attribute::AllowedMechanisms(vec![DES3_ECB_ENCRYPT_DATA]),
    ]
}

/// Refuse a master key object that is readable, extractable, or usable for
/// anything but deriving (a key someone created by hand with other tools).
pub fn check_master_key(
    session: &Session,
    handle: ObjectHandle,
    label: &str,
) -> Result<(), Pkcs11Error> {
    let bad = |reason| Pkcs11Error::KeyNotProtected {
        label: label.into(),
        reason,
    };
    let info = session.get_attribute_info(handle, &[AttributeType::Value])?;
    if !matches!(info.first(), Some(AttributeInfo::Sensitive)) {
        return Err(bad("its value is readable"));
    }
    let attrs = session.get_attributes(
        handle,
        &[
            AttributeType::KeyType,
            AttributeType::Sensitive,
            AttributeType::Extractable,
            AttributeType::Derive,
            AttributeType::Encrypt,
            AttributeType::Decrypt,
            AttributeType::Wrap,
            AttributeType::Unwrap,
            AttributeType::Sign,
        ],
    )?;
    for a in attrs {
        let problem = match a {
            Attribute::KeyType(t) if t != KeyType::DES2 => Some("not a 2-key 3DES key"),
            Attribute::Sensitive(false) => Some("CKA_SENSITIVE is false"),
            Attribute::Extractable(true) => Some("CKA_EXTRACTABLE is true"),
            Attribute::Derive(false) => Some("CKA_DERIVE is false"),
            Attribute::Encrypt(true) | Attribute::Decrypt(true) => {
                Some("it may encrypt or decrypt")
            }
            Attribute::Wrap(true) | Attribute::Unwrap(true) => Some("it may wrap or unwrap"),
            Attribute::Sign(true) => Some("it may sign"),
            _ => None,
        };
        if let Some(p) = problem {
            return Err(bad(p));
        }
    }
    Ok(())
}

/// The token's `CKA_CHECK_VALUE` of a key (for DES keys made by import or
/// generation on SoftHSM: the first 3 bytes of 3DES of a zero block), if it
/// has one.
pub fn check_value(
    session: &Session,
    handle: ObjectHandle,
) -> Result<Option<[u8; 3]>, Pkcs11Error> {
    let attrs = session.get_attributes(handle, &[AttributeType::CheckValue])?;
    Ok(attrs.into_iter().find_map(|a| match a {
        Attribute::CheckValue(v) => v.try_into().ok(),
        _ => None,
    }))
}

/// What a key derived inside the token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DerivedUse {
    /// A card key (KP/KL): only derives session keys.
    CardKey,
    /// A session key, or its left half doubled: only encrypts with 3DES-CBC (MACs).
    MacKey,
}

/// The template of a derived key: a session object (gone with the session at
/// the latest), sensitive, never extractable, one use only. Not `CKA_PRIVATE`:
/// a session object is visible only to this process's sessions, all logged
/// in, so privacy adds nothing but SoftHSM's in-memory encryption of the value
/// on every use (measured: a third more authorisations per CPU second without).
pub fn derived_template(usage: DerivedUse) -> Vec<Attribute> {
    let (derive, encrypt, mech) = match usage {
        DerivedUse::CardKey => (true, false, DES3_ECB_ENCRYPT_DATA),
        DerivedUse::MacKey => (false, true, MechanismType::DES3_CBC),
    };
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::DES2),
        Attribute::Token(false),
        Attribute::Private(false),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Derive(derive),
        Attribute::Encrypt(encrypt),
        Attribute::Decrypt(false),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::AllowedMechanisms(vec![mech]),
    ]
}

/// Refuse a derive template unless it says, explicitly, session object,
/// sensitive, not extractable, and cannot wrap, unwrap or carry a value.
pub fn check_derive_template(template: &[Attribute]) -> Result<(), Pkcs11Error> {
    let (mut token, mut sensitive, mut extractable) = (None, None, None);
    for a in template {
        match a {
            Attribute::Token(v) => token = Some(*v),
            Attribute::Sensitive(v) => sensitive = Some(*v),
            Attribute::Extractable(v) => extractable = Some(*v),
            Attribute::Wrap(true) | Attribute::Unwrap(true) => {
                return Err(Pkcs11Error::UnprotectedTemplate(
                    "a derived key may not wrap or unwrap",
                ))
            }
            Attribute::Value(_) | Attribute::ValueLen(_) => {
                return Err(Pkcs11Error::UnprotectedTemplate(
                    "a derive template may not set the value",
                ))
            }
            Attribute::Modifiable(true) | Attribute::Copyable(true) => {
                return Err(Pkcs11Error::UnprotectedTemplate(
                    "a derived key may not be modifiable or copyable",
                ))
            }
            _ => {}
        }
    }
    if token != Some(false) {
        return Err(Pkcs11Error::UnprotectedTemplate(
            "a derived key must be a session object (CKA_TOKEN false)",
        ));
    }
    if sensitive != Some(true) {
        return Err(Pkcs11Error::UnprotectedTemplate(
            "a derived key must be sensitive (CKA_SENSITIVE true)",
        ));
    }
    if extractable != Some(false) {
        return Err(Pkcs11Error::UnprotectedTemplate(
            "a derived key must not be extractable (CKA_EXTRACTABLE false)",
        ));
    }
    Ok(())
}

/// Derive a key inside the token: `value = 3DES-ECB_base(data)`
/// (`CKM_DES3_ECB_ENCRYPT_DATA`). The template is checked first
/// ([`check_derive_template`]): this is the only derive the crate performs.
pub fn derive_protected(
    session: &Session,
    base: ObjectHandle,
    data: &[u8; 16],
    template: &[Attribute],
) -> Result<ObjectHandle, Pkcs11Error> {
    check_derive_template(template)?;
    let params = cryptoki_sys::CK_KEY_DERIVATION_STRING_DATA {
        pData: data.as_ptr() as *mut u8,
        ulLen: data.len() as cryptoki_sys::CK_ULONG,
    };
    let mech = Mechanism::VendorDefined(VendorDefinedMechanism::new(
        DES3_ECB_ENCRYPT_DATA,
        Some(&params),
    ));
    Ok(session.derive_key(&mech, base, template)?)
}

/// A derived session object, destroyed when dropped (or, if that fails, when
/// its session closes).
pub(crate) struct Ephemeral<'s> {
    session: &'s Session,
    handle: ObjectHandle,
}

impl<'s> Ephemeral<'s> {
    pub(crate) fn derive(
        session: &'s Session,
        base: ObjectHandle,
        data: &[u8; 16],
        usage: DerivedUse,
    ) -> Result<Self, Pkcs11Error> {
        let handle = derive_protected(session, base, data, &derived_template(usage))?;
        Ok(Self { session, handle })
    }

    pub(crate) fn handle(&self) -> ObjectHandle {
        self.handle
    }
}

impl Drop for Ephemeral<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.session.destroy_object(self.handle) {
            tracing::warn!(error = %e, "could not destroy a derived key object; it goes with its session");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_built_here_pass_the_check() {
        for u in [DerivedUse::CardKey, DerivedUse::MacKey] {
            check_derive_template(&derived_template(u)).unwrap();
        }
    }

    #[test]
    fn unprotected_templates_are_refused() {
        let base = derived_template(DerivedUse::MacKey);
        let with = |replace: Attribute| -> Vec<Attribute> {
            let t = replace.attribute_type();
            let mut v: Vec<_> = base
                .iter()
                .filter(|a| a.attribute_type() != t)
                .cloned()
                .collect();
            v.push(replace);
            v
        };
        let without = |t: AttributeType| -> Vec<Attribute> {
            base.iter()
                .filter(|a| a.attribute_type() != t)
                .cloned()
                .collect()
        };
        for bad in [
            with(Attribute::Extractable(true)),
            with(Attribute::Sensitive(false)),
            with(Attribute::Token(true)),
            with(Attribute::Wrap(true)),
            with(Attribute::Unwrap(true)),
            with(Attribute::Value(vec![0; 16])),
            with(Attribute::Modifiable(true)),
            without(AttributeType::Extractable),
            without(AttributeType::Sensitive),
            without(AttributeType::Token),
        ] {
            assert!(
                matches!(
                    check_derive_template(&bad),
                    Err(Pkcs11Error::UnprotectedTemplate(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn mechanism_constant_is_the_pkcs11_number() {
        assert_eq!(*DES3_ECB_ENCRYPT_DATA, 0x1102);
        assert_eq!(
            DES3_ECB_ENCRYPT_DATA.to_string(),
            "CKM_DES3_ECB_ENCRYPT_DATA"
        );
    }
}
