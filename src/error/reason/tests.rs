//! The log-only reasons (tunnels, response bodies, refused heads) read as
//! plain words.

use std::io;

use super::*;

#[test]
fn log_only_reasons_are_plain() {
    let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
    assert_eq!(
        tunnel_ended(&eof),
        "the tunnel ended with an error: the peer closed the connection early"
    );
    assert_eq!(
        body_failed(&io::Error::from(io::ErrorKind::ConnectionReset)),
        "the origin's response body broke off: connection reset by the peer"
    );
    let other = io::Error::other("weird");
    assert_eq!(
        malformed(400, &other),
        "the request head is malformed; refused with 400: weird"
    );
    assert!(malformed(431, &other).contains("--max-header-bytes"));
    assert!(TOO_MANY_CONNECTIONS.contains("--max-client-conns"));
    assert!(CLIENT_WENT_AWAY.starts_with("the client went away"));
    let os = io::Error::from_raw_os_error(libc::EACCES);
    assert_eq!(io_plain(&os), "Permission denied");
}
