//! A throwaway certificate authority for tests: a CA and a server
//! certificate for `localhost` / `127.0.0.1` signed by it, as PEM files.

use std::path::{Path, PathBuf};

/// The files of a test CA in one directory.
#[derive(Debug, Clone)]
pub struct TestCa {
    dir: PathBuf,
}

impl TestCa {
    /// Write a new CA, and a server certificate and key signed by it, to `dir`.
    pub fn write(dir: &Path) -> Self {
        write_certificates(dir);
        Self {
            dir: dir.to_owned(),
        }
    }

    /// The CA certificate clients trust.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The server's certificate (signed by the CA).
    pub fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    /// The server's private key.
    pub fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }
}

/// A throwaway CA and a server certificate for `localhost` signed by it
/// (`ca.pem`, `cert.pem`, `key.pem` in `dir`).
pub fn write_certificates(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Sanyu test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("server params");
    let cert = params.signed_by(&key, &issuer).expect("server certificate");
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write CA");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write cert");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write key");
}
