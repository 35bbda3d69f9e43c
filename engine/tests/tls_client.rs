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
