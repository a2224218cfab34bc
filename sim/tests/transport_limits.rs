//! Sockets this machine cannot open are the harness's limit, not the backend's: with every file
//! the soft open-file limit allows taken, an MQTT connect and an HTTP request fail as `Local`
//! (counted `errors.local`), not as a refusal; with the limit back, a connect to a closed port
//! is an I/O failure again. Its own test binary: the limit is the process's, and no other test
//! may share it.

use std::net::{SocketAddr, TcpListener};

use fleetsim::transport::http::{HttpError, Method, request_json};
use fleetsim::transport::mqtt::{ConnectParams, MqttConn, TransportError};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

fn open_files() -> u64 {
    std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count() as u64
}

fn set_soft_limit(soft: Option<u64>) {
    let hard = getrlimit(Resource::Nofile).maximum;
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: soft,
            maximum: hard,
        },
    )
    .expect("setrlimit");
}

#[tokio::test(flavor = "current_thread")]
async fn out_of_files_is_local_not_refused() {
    // A real listener, so that only the missing socket can fail the first connects.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let before = getrlimit(Resource::Nofile).current;
    let params = ConnectParams {
        client_id: "limits",
        keep_alive_s: 30,
        clean_session: true,
        login: None,
        v5: None,
        subscribe: None,
    };

    // A few files of room under the limit, then every one of them taken.
    set_soft_limit(Some(open_files() + 8));
    let mut held = Vec::new();
    let full = loop {
        match std::fs::File::open("/dev/null") {
            Ok(file) => held.push(file),
            Err(error) => break error,
        }
    };
    let mqtt = MqttConn::connect(addr, None, params).await.err();
    let http = request_json(addr, Method::GET, "/healthz", None).await.err();
    drop(held);
    set_soft_limit(before);

    assert_eq!(
        full.raw_os_error(),
        Some(rustix::io::Errno::MFILE.raw_os_error()),
        "{full}"
    );

    assert_eq!(mqtt, Some(TransportError::Local));
    assert_eq!(http, Some(HttpError::Local));

    // With room again the socket opens, and the closed port refuses it.
    drop(listener);
    let refused = MqttConn::connect(addr, None, params).await.err();
    assert!(matches!(refused, Some(TransportError::Io(_))), "{refused:?}");
}
