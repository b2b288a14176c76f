//! HTTPS for the HTTP API (influxd's `https-enabled`, `https-certificate`,
//! `https-private-key`): the certificate chain and key are read from PEM
//! files at startup (the key from the certificate's file when no key file
//! is named, as influxd does), and each connection's TLS handshake runs on
//! the connection itself, never in the accept loop, so a client that
//! stalls its handshake holds up no one else.

use std::future::Future as _;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

/// What went wrong loading the HTTPS certificate or key.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("HTTPS {what} {}: {reason}", .path.display())]
    Pem {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls refused the pair (a key that does not match, say).
    #[error("HTTPS certificate {} with key {}: {source}", .cert.display(), .key.display())]
    Config {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
}

/// The TLS acceptor for `cert` (a PEM chain) and `key` (a PEM private key;
/// `None` = the same file as the certificate).
pub fn acceptor(cert: &Path, key: Option<&Path>) -> Result<TlsAcceptor, TlsError> {
    let key = key.unwrap_or(cert);
    let pem = |what, path: &Path, reason: String| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem("certificate", cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem("certificate", cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(pem(
            "certificate",
            cert,
            "no certificate in the file".into(),
        ));
    }
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|e| pem("private key", key, e.to_string()))?;
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(certs, private))
            .map_err(|source| TlsError::Config {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                source,
            })?;
    let mut config = config;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A server-side TLS connection whose handshake runs on first use.
pub struct TlsConn {
    state: State,
}

enum State {
    Handshake(Box<tokio_rustls::Accept<TcpStream>>),
    Ready(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl std::fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self.state {
            State::Handshake(_) => "handshake",
            State::Ready(_) => "ready",
        };
        f.debug_struct("TlsConn").field("state", &s).finish()
    }
}

impl TlsConn {
    /// Starts serving TLS on `stream` (the handshake happens on first use).
    pub fn new(acceptor: &TlsAcceptor, stream: TcpStream) -> Self {
        Self {
            state: State::Handshake(Box::new(acceptor.accept(stream))),
        }
    }

    /// The established stream, driving the handshake until it is.
    fn ready(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<&mut tokio_rustls::server::TlsStream<TcpStream>>> {
        if let State::Handshake(accept) = &mut self.state {
            match Pin::new(accept.as_mut()).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(s)) => self.state = State::Ready(Box::new(s)),
            }
        }
        match &mut self.state {
            State::Ready(s) => Poll::Ready(Ok(s)),
            State::Handshake(_) => Poll::Pending,
        }
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.ready(cx) {
            Poll::Ready(Ok(s)) => Pin::new(s).poll_read(cx, buf),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.ready(cx) {
            Poll::Ready(Ok(s)) => Pin::new(s).poll_write(cx, buf),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.ready(cx) {
            Poll::Ready(Ok(s)) => Pin::new(s).poll_flush(cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.ready(cx) {
            Poll::Ready(Ok(s)) => Pin::new(s).poll_shutdown(cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(r: Result<TlsAcceptor, TlsError>) -> String {
        match r {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bad_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = err(acceptor(&missing, None));
        assert!(
            e.contains("certificate") && e.contains("missing.pem"),
            "{e}"
        );

        let a = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert, key, both) = (
            dir.path().join("cert.pem"),
            dir.path().join("other-key.pem"),
            dir.path().join("both.pem"),
        );
        std::fs::write(&cert, a.cert.pem()).unwrap();
        std::fs::write(&key, b.key_pair.serialize_pem()).unwrap();
        // A certificate file without a key, and no key file named.
        let e = err(acceptor(&cert, None));
        assert!(e.contains("private key"), "{e}");
        // A key that is not the certificate's.
        let e = err(acceptor(&cert, Some(&key)));
        assert!(e.contains("other-key.pem"), "{e}");
        // Certificate and key in one file, as influxd allows.
        std::fs::write(&both, a.cert.pem() + &a.key_pair.serialize_pem()).unwrap();
        assert!(acceptor(&both, None).is_ok());
    }
}
