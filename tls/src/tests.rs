//! Real handshakes over loopback TCP: a tonic health service behind [`incoming`], reached by
//! channels from [`lazy_channel`]/[`connect`].

use std::{path::Path, time::Duration};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use super::*;

struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Ca(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, self.0.pem()).unwrap();
        path
    }

    /// A certificate for `127.0.0.1` and `localhost`, signed by this CA, written to `dir`.
    fn issue(&self, dir: &Path, name: &str) -> Identity {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
            .unwrap()
            .signed_by(&key, &self.0)
            .unwrap();
        let identity = Identity {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&identity.key, key.serialize_pem()).unwrap();
        std::fs::write(&identity.cert, cert.pem()).unwrap();
        identity
    }
}

async fn serve(tls: ServerTls) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (_, health) = tonic_health::server::health_reporter();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(incoming(listener, tls)),
    );
    addr
}

async fn check(addr: &str, tls: &ClientTls) -> Result<(), String> {
    let channel = connect(addr, Some(tls), Duration::from_secs(5))
        .await
        .map_err(|e| format!("{e:?}"))?;
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_server_certificate_is_verified_against_the_clients_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let server = serve(ServerTls::new(ca.issue(dir.path(), "server"), None).unwrap()).await;
    let trusting = ClientTls::new(ca.write(dir.path(), "ca"), None, None).unwrap();
    check(&server, &trusting).await.unwrap();
    let other = ClientTls::new(Ca::new().write(dir.path(), "other"), None, None).unwrap();
    assert!(check(&server, &other).await.is_err());
    // The certificate names 127.0.0.1 and localhost, nothing else.
    let misnamed = ClientTls::new(
        ca.write(dir.path(), "ca"),
        None,
        Some("dura.example".into()),
    )
    .unwrap();
    assert!(check(&server, &misnamed).await.is_err());
}

#[tokio::test]
async fn mutual_tls_refuses_a_client_without_a_certificate_of_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let ca_file = ca.write(dir.path(), "ca");
    let server =
        serve(ServerTls::new(ca.issue(dir.path(), "server"), Some(ca_file.clone())).unwrap()).await;
    let with_cert =
        ClientTls::new(ca_file.clone(), Some(ca.issue(dir.path(), "client")), None).unwrap();
    check(&server, &with_cert).await.unwrap();
    let without = ClientTls::new(ca_file.clone(), None, None).unwrap();
    assert!(check(&server, &without).await.is_err());
    let foreign =
        ClientTls::new(ca_file, Some(Ca::new().issue(dir.path(), "foreign")), None).unwrap();
    assert!(check(&server, &foreign).await.is_err());
    // The refused handshakes did not stop the listener.
    check(&server, &with_cert).await.unwrap();
}

#[tokio::test]
async fn a_renewed_certificate_serves_new_connections_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (old_ca, new_ca) = (Ca::new(), Ca::new());
    let identity = old_ca.issue(dir.path(), "server");
    let server = serve(ServerTls::new(identity.clone(), None).unwrap()).await;
    let trusts_new = ClientTls::new(new_ca.write(dir.path(), "new-ca"), None, None).unwrap();
    assert!(check(&server, &trusts_new).await.is_err());

    // Renewed in place, as cert-manager does: by a new CA here, so the switch is visible.
    let renewed = new_ca.issue(dir.path(), "renewed");
    std::fs::rename(&renewed.key, &identity.key).unwrap();
    std::fs::rename(&renewed.cert, &identity.cert).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while let Err(e) = check(&server, &trusts_new).await {
        assert!(std::time::Instant::now() < deadline, "never reloaded: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn unusable_files_are_refused_at_start_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let identity = ca.issue(dir.path(), "server");
    let missing = Identity {
        cert: dir.path().join("absent.crt"),
        key: identity.key.clone(),
    };
    let error = ServerTls::new(missing, None).err().unwrap().to_string();
    assert!(error.contains("absent.crt"), "{error}");
    // A key that is not the certificate's.
    let mismatched = Identity {
        cert: identity.cert.clone(),
        key: ca.issue(dir.path(), "other").key,
    };
    assert!(ServerTls::new(mismatched, None).is_err());
    let not_a_ca = ClientTls::new(identity.key.clone(), None, None)
        .err()
        .unwrap();
    assert!(not_a_ca.to_string().contains("server.key"), "{not_a_ca}");
}
