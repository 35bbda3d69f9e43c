//! The TLS client the source uses for `wss://` endpoints is usable: building its rustls
//! configuration does not panic (a crypto provider is compiled in), and a handshake with a
//! server that is not TLS fails with an error, not a panic.

#[tokio::test]
async fn wss_connect_to_a_non_tls_server_is_an_error_not_a_panic() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        if let Ok((mut s, _)) = listener.accept().await {
            use tokio::io::AsyncWriteExt;
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio_tungstenite::connect_async(format!("wss://{addr}/ws")),
    )
    .await
    .expect("an answer in time");
    assert!(
        r.is_err(),
        "a plain-TCP server cannot complete a TLS handshake"
    );
    server.abort();
}

/// A TLS server with a private certificate answering one HTTP request with `body`.
async fn tls_server(
    cert: rustls::pki_types::CertificateDer<'static>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
    body: &'static str,
    connections: usize,
) -> u16 {
    let cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        for _ in 0..connections {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                continue;
            };
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut buf = vec![0u8; 4096];
            let _ = tls.read(&mut buf).await;
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.write_all(resp.as_bytes()).await;
            let _ = tls.shutdown().await;
        }
    });
    port
}

#[tokio::test]
async fn https_rest_snapshots_are_fetched_and_certificates_checked() {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("certificate");
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
    let body = r#"{"lastUpdateId":7,"bids":[["1.50","2"]],"asks":[["1.60","3"]]}"#;
    let port = tls_server(cert.clone(), key, body, 2).await;
    // Trusted (a private root given): the body comes back.
    let base = format!("https://localhost:{port}");
    let path = "/api/v3/depth?symbol=BTCUSDT&limit=5";
    let client = tickwire_engine::source::rest::HttpClient::new(&base, std::slice::from_ref(&cert))
        .expect("client");
    let got = client.get(path).await.expect("fetched over TLS");
    assert_eq!(got.body, body);
    // Not trusted (only the public roots): refused, as a TLS error.
    let e = tickwire_engine::source::rest::HttpClient::new(&base, &[])
        .expect("client")
        .get(path)
        .await
        .expect_err("an unknown issuer is refused");
    assert!(
        matches!(e, tickwire_engine::source::rest::RestError::Tls { .. }),
        "{e}"
    );
}
