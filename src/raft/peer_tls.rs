//! Mutual TLS between nodes on the gRPC port (raft messages, snapshot
//! installs, forwarded proposals, membership changes, the file service).
//!
//! Every node has a certificate signed by the cluster's CA that names it
//! twice, as DNS subject alternative names: `tsnode` (every node: what a
//! client checks when it does not know which node it reaches) and
//! `node-<id>` (this node: what a server checks against the `from` of
//! every message). A server refuses, in the TLS handshake, a client whose
//! certificate the CA did not sign; it then refuses a request whose
//! `from` is another node than the certificate names. A client refuses a
//! server the CA did not sign.
//!
//! The identity is the process's (one node per `tsnode serve`): it is
//! installed once at startup ([`install`]) and every gRPC client and the
//! server use it. Without it, gRPC is plain (in-process tests, clusters on
//! a private network).

use std::path::Path;
use std::sync::OnceLock;

use rustls_pki_types::{CertificateDer, ServerName};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use tonic::{Request, Status};

/// The name every node's certificate carries.
pub const CLUSTER_NAME: &str = "tsnode";

/// The name node `id`'s certificate carries.
pub fn node_name(id: u64) -> String {
    format!("node-{id}")
}

/// A node's TLS identity on the gRPC port.
#[derive(Debug, Clone)]
pub struct PeerTls {
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

/// Why the identity could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PeerTlsError {
    /// A PEM file could not be read.
    #[error("read {what} {path}: {source}")]
    Read {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM file holds no certificate (or key).
    #[error("{what} {path} holds no PEM {expected}")]
    Empty {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: String,
        /// What was looked for.
        expected: &'static str,
    },
    /// The files do not make a TLS configuration.
    #[error("TLS between nodes: {0}")]
    Invalid(String),
    /// The certificate does not name this node.
    #[error("the certificate {path} does not name {name} (a DNS subject alternative name)")]
    NotThisNode {
        /// Its path.
        path: String,
        /// The name it lacks.
        name: String,
    },
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, PeerTlsError> {
    std::fs::read(path).map_err(|source| PeerTlsError::Read {
        what,
        path: path.display().to_string(),
        source,
    })
}

fn first_cert(pem: &[u8]) -> Option<CertificateDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem).next()?.ok()
}

impl PeerTls {
    /// Loads the CA, the node's certificate (PEM chain) and its key, and
    /// checks that the certificate names node `id`.
    pub fn load(id: u64, ca: &Path, cert: &Path, key: &Path) -> Result<Self, PeerTlsError> {
        let me = Self {
            ca: read("cluster CA", ca)?,
            cert: read("node certificate", cert)?,
            key: read("node private key", key)?,
        };
        for (what, path, pem) in [
            ("cluster CA", ca, &me.ca),
            ("node certificate", cert, &me.cert),
        ] {
            if first_cert(pem).is_none() {
                return Err(PeerTlsError::Empty {
                    what,
                    path: path.display().to_string(),
                    expected: "certificate",
                });
            }
        }
        if !String::from_utf8_lossy(&me.key).contains("PRIVATE KEY-----") {
            return Err(PeerTlsError::Empty {
                what: "node private key",
                path: key.display().to_string(),
                expected: "private key",
            });
        }
        let own =
            first_cert(&me.cert).filter(|c| names(c, &node_name(id)) && names(c, CLUSTER_NAME));
        if own.is_none() {
            return Err(PeerTlsError::NotThisNode {
                path: cert.display().to_string(),
                name: format!("{} and {CLUSTER_NAME}", node_name(id)),
            });
        }
        // Both sides parse now, so that a bad file stops the start, not
        // the first connection.
        tonic::transport::Server::builder()
            .tls_config(me.server())
            .map_err(|e| PeerTlsError::Invalid(format!("server side: {e}")))?;
        tonic::transport::Endpoint::from_static("https://127.0.0.1:1")
            .tls_config(me.client())
            .map_err(|e| PeerTlsError::Invalid(format!("client side: {e}")))?;
        Ok(me)
    }

    /// The server side: this node's certificate; clients must present one
    /// the CA signed.
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert, &self.key))
            .client_ca_root(Certificate::from_pem(&self.ca))
    }

    /// The client side: this node's certificate; the server must present
    /// one the CA signed, naming [`CLUSTER_NAME`].
    pub fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .identity(Identity::from_pem(&self.cert, &self.key))
            .domain_name(CLUSTER_NAME)
    }
}

/// Whether `cert` names `name` (a DNS subject alternative name).
fn names(cert: &CertificateDer<'_>, name: &str) -> bool {
    let Ok(ee) = webpki::EndEntityCert::try_from(cert) else {
        return false;
    };
    let Ok(sn) = ServerName::try_from(name) else {
        return false;
    };
    ee.verify_is_valid_for_subject_name(&sn).is_ok()
}

static CURRENT: OnceLock<PeerTls> = OnceLock::new();

/// Makes `tls` this process's identity on the gRPC port (once; later
/// calls change nothing).
pub fn install(tls: PeerTls) {
    let _ = CURRENT.set(tls);
}

/// This process's identity, if TLS is on.
pub fn current() -> Option<&'static PeerTls> {
    CURRENT.get()
}

/// The URL of a peer's gRPC address, `https://` when TLS is on.
pub fn url(addr: &str) -> String {
    match current() {
        Some(_) => format!("https://{addr}"),
        None => format!("http://{addr}"),
    }
}

/// With TLS on: `Ok` only if the client's certificate names node `from`
/// (the handshake already checked the CA signed it).
pub fn check_sender<T>(req: &Request<T>, from: u64) -> Result<(), Status> {
    if current().is_none() {
        return Ok(());
    }
    let certs = req.peer_certs();
    let named = certs
        .as_deref()
        .and_then(|c| c.first())
        .is_some_and(|c| names(c, &node_name(from)));
    if named {
        Ok(())
    } else {
        Err(Status::permission_denied(format!(
            "the client's certificate does not name node {from} ({})",
            node_name(from)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA, and a certificate it signs for `names`: (CA PEM, cert PEM,
    /// key PEM).
    fn issue(names: &[&str]) -> (String, String, String) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap()
                .signed_by(&key, &ca_cert, &ca_key)
                .unwrap();
        (ca_cert.pem(), cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_node_certificate_must_name_the_node_and_the_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let write = |n: &str, s: &str| {
            let p = dir.path().join(n);
            std::fs::write(&p, s).unwrap();
            p
        };
        let (ca, cert, key) = issue(&["tsnode", "node-3"]);
        let (ca, cert, key) = (write("ca", &ca), write("cert", &cert), write("key", &key));
        assert!(PeerTls::load(3, &ca, &cert, &key).is_ok());
        assert!(matches!(
            PeerTls::load(4, &ca, &cert, &key),
            Err(PeerTlsError::NotThisNode { .. })
        ));
        let (_, only_node, k2) = issue(&["node-3"]);
        let (only_node, k2) = (write("c2", &only_node), write("k2", &k2));
        assert!(matches!(
            PeerTls::load(3, &ca, &only_node, &k2),
            Err(PeerTlsError::NotThisNode { .. })
        ));
        assert!(matches!(
            PeerTls::load(3, &ca, &key, &key),
            Err(PeerTlsError::Empty { .. })
        ));
        assert!(matches!(
            PeerTls::load(3, &dir.path().join("nope"), &cert, &key),
            Err(PeerTlsError::Read { .. })
        ));
        let der = first_cert(std::fs::read(&cert).unwrap().as_slice()).unwrap();
        assert!(names(&der, "node-3") && names(&der, "tsnode"));
        assert!(!names(&der, "node-33") && !names(&der, "node-"));
    }
}
