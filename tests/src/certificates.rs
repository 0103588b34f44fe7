//! Certificates for servers on loopback, made with openssl: a CA of their own, a serving
//! certificate for 127.0.0.1, and a client certificate, all signed by that CA.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::process::program;

/// The files of a CA, a server certificate for 127.0.0.1 and a client certificate, in
/// one folder (PEM, and the CA also in DER).
#[derive(Clone, Debug)]
pub struct Certificates {
    dir: PathBuf,
}

impl Certificates {
    /// Makes them in `dir`; the client certificate's common name is `client` (the user
    /// name servers such as etcd take from it).
    ///
    /// # Panics
    ///
    /// When openssl is missing or fails.
    pub fn make(dir: &Path, client: &str) -> Self {
        let write = |name: &str, text: &str| {
            std::fs::write(dir.join(name), text)
                .unwrap_or_else(|error| panic!("cannot write {name}: {error}"));
        };
        write(
            "server.ext",
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        );
        write(
            "client.ext",
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
             extendedKeyUsage=clientAuth\n",
        );
        let client_subject = format!("/CN={client}");
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "7",
                "-subj",
                "/CN=lock-tests-ca",
            ],
        );
        for (name, subject) in [("server", "/CN=127.0.0.1"), ("client", &client_subject)] {
            let (key, csr, crt, ext) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.crt"),
                format!("{name}.ext"),
            );
            openssl(
                dir,
                &[
                    "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj",
                    subject,
                ],
            );
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &crt,
                    "-days",
                    "7",
                    "-extfile",
                    &ext,
                ],
            );
        }
        openssl(
            dir,
            &["x509", "-in", "ca.crt", "-outform", "DER", "-out", "ca.der"],
        );
        Self {
            dir: dir.to_owned(),
        }
    }

    /// A file of theirs: `ca.crt`, `ca.der`, `server.crt`, `server.key`, `client.crt`,
    /// `client.key`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The contents of one of their files.
    ///
    /// # Panics
    ///
    /// When it cannot be read.
    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.file(name)).unwrap_or_else(|error| panic!("cannot read {name}: {error}"))
    }
}

/// Runs openssl with `args` in `dir`.
///
/// # Panics
///
/// When openssl is missing or fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new(program("openssl", "apt-get install openssl"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|error| panic!("cannot run openssl: {error}"));
    assert!(
        output.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}
