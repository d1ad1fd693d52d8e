//! A throw-away certificate authority for tests (TEST ONLY), like the one
//! `scripts/certs.sh` makes for the demo: EC P-256, name-constrained to
//! `localhost`, `127.0.0.0/8` and `::1`, and a server certificate for those
//! names, written as PEM files into a directory.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, CidrSubnet, DnType,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, KeyPair, KeyUsagePurpose, NameConstraints,
};

use crate::TlsFiles;

/// A CA and a server certificate signed by it, as files.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate (PEM): what a client is told to trust.
    pub ca_file: PathBuf,
    pub ca_pem: String,
    /// The server's chain (leaf, then CA) and key.
    pub server: TlsFiles,
}

fn ca_params(cn: &str, constrained: bool) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("no names");
    p.distinguished_name
        .push(DnType::OrganizationName, "Cardpay TEST");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    if constrained {
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        p.name_constraints = Some(NameConstraints {
            permitted_subtrees: vec![
                GeneralSubtree::DnsName("localhost".into()),
                GeneralSubtree::IpAddress(CidrSubnet::V4([127, 0, 0, 0], [255, 0, 0, 0])),
                GeneralSubtree::IpAddress(CidrSubnet::V6(v6, [0xff; 16])),
            ],
            excluded_subtrees: vec![],
        });
    }
    p
}

impl TestCa {
    /// A new CA (named `name`) and server certificate for `localhost`,
    /// `127.0.0.1` and `::1`, written to `dir` as `ca.pem`, `server.pem`, `server.key`.
    pub fn new(dir: &Path, name: &str) -> Self {
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(ca_params(name, true), key).expect("CA");
        let ca_pem = issuer.pem();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, &ca_pem).expect("write ca.pem");
        let mut ca = Self {
            issuer,
            ca_file,
            ca_pem,
            server: TlsFiles {
                cert_file: dir.join("server.pem"),
                key_file: dir.join("server.key"),
            },
        };
        let files = ca.server.clone();
        ca.issue(&["localhost", "127.0.0.1", "::1"], &files);
        ca
    }

    /// Issue a server certificate for `names` (DNS names or IP addresses) into
    /// `files` (chain: leaf, then the CA). The CA's name constraints still
    /// apply: a name outside them makes a certificate clients must refuse.
    pub fn issue(&mut self, names: &[&str], files: &TlsFiles) {
        let key = KeyPair::generate().expect("server key");
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("names");
        p.distinguished_name.push(DnType::CommonName, names[0]);
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = p.signed_by(&key, &self.issuer).expect("sign");
        std::fs::write(&files.cert_file, format!("{}{}", cert.pem(), self.ca_pem))
            .expect("write server cert");
        std::fs::write(&files.key_file, key.serialize_pem()).expect("write server key");
    }
}
