//! (d) Two tokens with the configured label (two HSM partitions named alike):
//! the module refuses to guess. Its own process: SoftHSM sees the second token
//! only if it exists before the process's first PKCS#11 call.

use cardpay_pkcs11::softhsm::TestToken;
use cardpay_pkcs11::{list_master_keys, Pkcs11Error, Pkcs11Keys};

#[test]
fn two_tokens_with_the_label_are_refused() {
    let token = TestToken::shared();
    token.init_token(&token.label).unwrap();
    let e = Pkcs11Keys::open(&token.config()).unwrap_err();
    assert!(
        matches!(&e, Pkcs11Error::TokenAmbiguous { label, count: 2 } if label == &token.label),
        "{e:?}"
    );
    assert!(matches!(
        list_master_keys(&token.config()),
        Err(Pkcs11Error::TokenAmbiguous { .. })
    ));
}
