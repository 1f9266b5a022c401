//! The shipped NATS configs are valid and start a working server.

#[test]
fn dev_conf_starts_a_jetstream_server() {
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/../nats/dev.conf");
    let dir = tempfile::tempdir().expect("temp dir");
    let binary = pinnacle_cli::nats_server::find_binary().expect("nats-server");
    // Command-line flags override the config's port and store dir, so tests never collide.
    let server = pinnacle_cli::nats_server::NatsServer::start(&binary, dir.path(), &["-c", conf])
        .expect("dev.conf is valid");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = async_nats::connect(server.url()).await.expect("connect");
        let js = async_nats::jetstream::new(client);
        // The KV API fails on servers older than 2.10; this proves the harness's server is new.
        let kv = js
            .create_key_value(async_nats::jetstream::kv::Config {
                bucket: "probe".into(),
                ..Default::default()
            })
            .await
            .expect("JetStream KV works");
        kv.put("k", "v".into()).await.expect("put");
        let value = kv.get("k").await.expect("get");
        assert_eq!(value.as_deref(), Some(&b"v"[..]));
    });
}
