//! (c) The master keys cannot be read out of the token: CKA_VALUE is
//! sensitive, the keys are not extractable, wrapping them is refused, their
//! attributes cannot be loosened or copied away, they cannot encrypt, and the
//! module's own derive refuses any template that would make a readable key.
//! One test records what SoftHSM 2.6.1 itself allows a PIN holder (the
//! caveat in docs/pkcs11.md). Admin import/generate/list are exercised here.

mod common;

use std::sync::Mutex;

use cardpay_pkcs11::token::{
    self, derive_protected, derived_template, DerivedUse, TokenSession, DES3_ECB_ENCRYPT_DATA,
};
use cardpay_pkcs11::{
    generate_master_keys, import_master_keys, list_master_keys, Kcv, Pkcs11Error,
};
use common::fixture;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::vendor_defined::VendorDefinedMechanism;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{
    Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::Session;
use purse::crypto::{self, DesKey};
use purse::security_module::{KeyUse, SecurityModuleError, SessionMacs};
use purse::CardId;
use purse::PurseId;

/// The tests below count session objects and change the token's key set.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn rv<T: std::fmt::Debug>(r: Result<T, CkError>) -> RvError {
    match r {
        Err(CkError::Pkcs11(rv, _)) => rv,
        other => panic!("expected the token to refuse, got {other:?}"),
    }
}

fn session_objects(s: &Session) -> usize {
    s.find_objects(&[
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::Token(false),
    ])
    .unwrap()
    .len()
}

fn master(s: &Session, label: &str) -> ObjectHandle {
    token::find_key(s, label)
        .unwrap()
        .expect("master key present")
}

fn bool_attrs(s: &Session, h: ObjectHandle, types: &[AttributeType]) -> Vec<Attribute> {
    s.get_attributes(h, types).unwrap()
}

fn value_is_sensitive(s: &Session, h: ObjectHandle) -> bool {
    matches!(
        s.get_attribute_info(h, &[AttributeType::Value])
            .unwrap()
            .as_slice(),
        [AttributeInfo::Sensitive]
    )
}

fn diversification_data(id: &CardId) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&id.bytes());
    d[8..].copy_from_slice(&id.bytes().map(|b| !b));
    d
}

#[test]
fn master_keys_cannot_be_read_out() {
    let _g = serial();
    let f = fixture();
    let ts = TokenSession::open(&f.cfg, true).unwrap();
    let s = ts.session();
    for label in ["cardpay-mkp-v1", "cardpay-mkl-v1"] {
        let mk = master(s, label);
        // CKA_VALUE: sensitive, not returned.
        assert!(value_is_sensitive(s, mk));
        assert!(s
            .get_attributes(mk, &[AttributeType::Value])
            .unwrap()
            .is_empty());
        assert_eq!(
            bool_attrs(
                s,
                mk,
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::Derive,
                    AttributeType::Encrypt,
                    AttributeType::Modifiable,
                    AttributeType::Copyable,
                ]
            ),
            vec![
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Derive(true),
                Attribute::Encrypt(false),
                Attribute::Modifiable(false),
                Attribute::Copyable(false),
            ]
        );

        // Wrapping under a key the caller holds: refused.
        let kek = s
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Token(false),
                    Attribute::ValueLen(32.into()),
                    Attribute::Wrap(true),
                ],
            )
            .unwrap();
        for m in [
            Mechanism::AesKeyWrap,
            Mechanism::AesKeyWrapPad,
            Mechanism::AesCbc([0; 16]),
        ] {
            assert_eq!(
                rv(s.wrap_key(&m, kek, mk)),
                RvError::KeyUnextractable,
                "{m:?}"
            );
        }
        s.destroy_object(kek).unwrap();

        // Loosening or copying the key away: refused.
        for a in [
            Attribute::Extractable(true),
            Attribute::Sensitive(false),
            Attribute::Encrypt(true),
            Attribute::AllowedMechanisms(vec![MechanismType::DES3_ECB]),
        ] {
            assert_eq!(
                rv(s.update_attributes(mk, std::slice::from_ref(&a))),
                RvError::ActionProhibited,
                "{a:?}"
            );
        }
        for t in [
            vec![],
            vec![Attribute::Extractable(true), Attribute::Sensitive(false)],
        ] {
            assert_eq!(rv(s.copy_object(mk, &t)), RvError::ActionProhibited);
        }

        // Using it as a cipher (a KCV-style oracle, or to decrypt): refused.
        for m in [Mechanism::Des3Ecb, Mechanism::Des3Cbc([0; 8])] {
            assert!(s.encrypt(&m, mk, &[0; 8]).is_err(), "{m:?}");
            assert!(s.decrypt(&m, mk, &[0; 8]).is_err(), "{m:?}");
        }
    }
}

#[test]
fn the_module_refuses_unprotected_derive_templates() {
    let _g = serial();
    let f = fixture();
    let ts = TokenSession::open(&f.cfg, false).unwrap();
    let s = ts.session();
    let mk = master(s, "cardpay-mkp-v1");
    let data = diversification_data(&CardId::parse("6280000000000001").unwrap());
    let before = session_objects(s);
    let base = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::DES2),
        Attribute::Token(false),
    ];
    let readable = [
        vec![Attribute::Sensitive(false), Attribute::Extractable(true)],
        vec![Attribute::Sensitive(true), Attribute::Extractable(true)],
        vec![Attribute::Sensitive(false), Attribute::Extractable(false)],
        // Left to the token's defaults: SoftHSM would make it readable.
        vec![],
    ];
    for extra in readable {
        let t: Vec<Attribute> = base.iter().cloned().chain(extra).collect();
        match derive_protected(s, mk, &data, &t) {
            Err(Pkcs11Error::UnprotectedTemplate(_)) => {}
            other => panic!("derive with {t:?} was not refused: {other:?}"),
        }
    }
    // A persistent copy on the token: refused too.
    let mut t = derived_template(DerivedUse::CardKey);
    t.retain(|a| a.attribute_type() != AttributeType::Token);
    t.push(Attribute::Token(true));
    assert!(matches!(
        derive_protected(s, mk, &data, &t),
        Err(Pkcs11Error::UnprotectedTemplate(_))
    ));
    assert_eq!(
        session_objects(s),
        before,
        "a refused derive made no object"
    );

    // The module's own templates: the derived key is as protected as the master.
    for usage in [DerivedUse::CardKey, DerivedUse::MacKey] {
        let k = derive_protected(s, mk, &data, &derived_template(usage)).unwrap();
        assert!(value_is_sensitive(s, k));
        assert_eq!(
            bool_attrs(s, k, &[AttributeType::Extractable, AttributeType::Token]),
            vec![Attribute::Extractable(false), Attribute::Token(false)]
        );
        s.destroy_object(k).unwrap();
    }
}

/// What SoftHSM 2.6.1 itself allows: a PIN holder who builds the template
/// can derive a readable card key from a sensitive, non-extractable master
/// key. This is why the module must be the only PIN holder. The value also
/// shows SoftHSM sets DES parity on derived keys: it equals
/// `purse::crypto::diversify` bit for bit.
#[test]
fn softhsm_lets_a_pin_holder_derive_a_readable_key() {
    let _g = serial();
    let f = fixture();
    let ts = TokenSession::open(&f.cfg, false).unwrap();
    let s = ts.session();
    let mk = master(s, "cardpay-mkp-v1");
    let id = CardId::parse("6280000000000001").unwrap();
    let data = diversification_data(&id);
    let params = cryptoki_sys::CK_KEY_DERIVATION_STRING_DATA {
        pData: data.as_ptr() as *mut u8,
        ulLen: 16,
    };
    let mech = Mechanism::VendorDefined(VendorDefinedMechanism::new(
        DES3_ECB_ENCRYPT_DATA,
        Some(&params),
    ));
    let k = s
        .derive_key(
            &mech,
            mk,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::DES2),
                Attribute::Token(false),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
            ],
        )
        .expect("SoftHSM 2.6.1 allows this; if it now refuses, update docs/pkcs11.md");
    let value = match s.get_attributes(k, &[AttributeType::Value]).unwrap().pop() {
        Some(Attribute::Value(v)) => v,
        other => panic!("value not readable: {other:?}"),
    };
    s.destroy_object(k).unwrap();
    let (mkp, _) = f.master(1);
    let sw = crypto::diversify(mkp, &id);
    assert_eq!(
        value.as_slice(),
        sw.bytes(),
        "parity-adjusted like diversify"
    );
    // Without parity adjustment the raw 3DES output differs in the low bits.
    assert_ne!(value[..8], mkp.encrypt_block(id.bytes()));
}

#[test]
fn derived_objects_do_not_outlive_the_call() {
    let _g = serial();
    let f = fixture();
    let ts = TokenSession::open(&f.cfg, false).unwrap();
    let before = session_objects(ts.session());
    let id = CardId::parse("6280000000000009").unwrap();
    for i in 0..50u16 {
        f.keys
            .session_macs(
                KeyUse::Load,
                2,
                &id,
                [1, 2, 3, 4],
                i,
                PurseId::Money,
                &[b"abc", &[0; 17]],
            )
            .unwrap();
    }
    assert_eq!(session_objects(ts.session()), before);
}

#[test]
fn generated_keys_never_leave_the_token() {
    let _g = serial();
    let f = fixture();
    let report = generate_master_keys(&f.cfg, 20).unwrap();
    let (p, l) = (report.mkp_kcv.unwrap(), report.mkl_kcv.unwrap());
    assert_ne!(p, l);
    assert!(report.to_string().starts_with("key version 20: MKP KCV "));
    let ts = TokenSession::open(&f.cfg, false).unwrap();
    let s = ts.session();
    for label in ["cardpay-mkp-v20", "cardpay-mkl-v20"] {
        let mk = master(s, label);
        assert_eq!(
            bool_attrs(
                s,
                mk,
                &[
                    AttributeType::AlwaysSensitive,
                    AttributeType::NeverExtractable,
                    AttributeType::Local
                ]
            ),
            vec![
                Attribute::AlwaysSensitive(true),
                Attribute::NeverExtractable(true),
                Attribute::Local(true)
            ]
        );
    }
    // Never overwritten, by generate or import.
    assert!(matches!(
        generate_master_keys(&f.cfg, 20),
        Err(Pkcs11Error::KeyExists(l)) if l == "cardpay-mkp-v20"
    ));
    let k = DesKey::from_hex("000102030405060708090A0B0C0D0E0F").unwrap();
    let k2 = DesKey::from_hex("101112131415161718191A1B1C1D1E1F").unwrap();
    assert!(matches!(
        import_master_keys(&f.cfg, 20, &k, &k2),
        Err(Pkcs11Error::KeyExists(_))
    ));
    let listed = list_master_keys(&f.cfg).unwrap();
    let v20: Vec<_> = listed.iter().filter(|i| i.key_version == 20).collect();
    assert_eq!(v20.len(), 2);
    assert_eq!(v20[0].kcv, Some(p));
    assert!(v20.iter().all(|i| i.unprotected.is_none()));
    // Imported keys list the KCV of the key given.
    let v1p = listed
        .iter()
        .find(|i| i.key_version == 1 && i.key == KeyUse::Purchase)
        .unwrap();
    assert_eq!(v1p.kcv, Some(Kcv::of(f.master(1).0)));

    // The server picks the new version up and uses it.
    assert!(f.keys.refresh().unwrap().contains(&20));
    let id = CardId::parse("6280000000000001").unwrap();
    let a = f
        .keys
        .session_macs(
            KeyUse::Purchase,
            20,
            &id,
            [0; 4],
            1,
            PurseId::Money,
            &[b"m"],
        )
        .unwrap();
    let b = f
        .keys
        .session_macs(
            KeyUse::Purchase,
            20,
            &id,
            [0; 4],
            1,
            PurseId::Money,
            &[b"m"],
        )
        .unwrap();
    let c = f
        .keys
        .session_macs(KeyUse::Load, 20, &id, [0; 4], 1, PurseId::Money, &[b"m"])
        .unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn bad_imports_write_nothing() {
    let _g = serial();
    let f = fixture();
    let before = list_master_keys(&f.cfg).unwrap().len();
    let k = DesKey::from_hex("000102030405060708090A0B0C0D0E0F").unwrap();
    let single = DesKey::from_hex("0001020304050607".repeat(2).as_str()).unwrap();
    for (p, l) in [(&k, &k), (&single, &k), (&k, &single)] {
        assert!(matches!(
            import_master_keys(&f.cfg, 21, p, l),
            Err(Pkcs11Error::Config(_))
        ));
    }
    assert_eq!(list_master_keys(&f.cfg).unwrap().len(), before);
}

#[test]
fn unprotected_or_half_master_keys_are_not_used() {
    let _g = serial();
    let f = fixture();
    let ts = TokenSession::open(&f.cfg, true).unwrap();
    let s = ts.session();
    // Only MKP of version 30 (e.g. an import that crashed half-way elsewhere).
    let half = s
        .create_object(&{
            let mut t = token::master_key_template("cardpay-mkp-v30", b"P\x1e");
            t.push(Attribute::Value(
                vec![0x31; 8].into_iter().chain(vec![0x32; 8]).collect(),
            ));
            t
        })
        .unwrap();
    assert!(!f.keys.refresh().unwrap().contains(&30));
    let id = CardId::parse("6280000000000001").unwrap();
    assert_eq!(
        f.keys.session_macs(
            KeyUse::Purchase,
            30,
            &id,
            [0; 4],
            1,
            PurseId::Money,
            &[b"m"]
        ),
        Err(SecurityModuleError::UnknownKeyVersion(30))
    );

    // Keys someone created by hand, readable: the module refuses to run on them.
    let mut made = vec![half];
    for label in ["cardpay-mkp-v31", "cardpay-mkl-v31"] {
        made.push(
            s.create_object(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::DES2),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Value(vec![0x45; 8].into_iter().chain(vec![0x46; 8]).collect()),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
                Attribute::Derive(true),
            ])
            .unwrap(),
        );
    }
    let refused = f.keys.refresh();
    let listed = list_master_keys(&f.cfg);
    for h in made {
        s.destroy_object(h).unwrap();
    }
    assert!(matches!(
        refused,
        Err(Pkcs11Error::KeyNotProtected { label, .. }) if label == "cardpay-mkp-v31"
    ));
    let listed = listed.unwrap();
    let v31 = listed.iter().find(|i| i.key_version == 31).unwrap();
    assert_eq!(v31.unprotected.as_deref(), Some("its value is readable"));
    // After removal the module runs again with the good versions.
    assert!(f.keys.refresh().unwrap().starts_with(&common::VERSIONS));
}
