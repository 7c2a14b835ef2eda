//! Readiness probes. Each is cheap and bounded in time: the supervisor runs them from its one
//! thread, and a hung server must not hang the supervisor.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_millis(250);
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

/// Where `host:port` is: this machine's loopback (IPv4 and IPv6) for `localhost`, else the
/// host's addresses (a compose layer's port published by an engine on another machine).
fn addrs(host: &str, port: u16) -> Vec<SocketAddr> {
    if host == "localhost" {
        return vec![
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
        ];
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    std::net::ToSocketAddrs::to_socket_addrs(&(bare, port))
        .map(Iterator::collect)
        .unwrap_or_default()
}

/// Something accepts connections on `host:port`, over IPv4 or IPv6.
pub fn tcp(host: &str, port: u16) -> bool {
    addrs(host, port)
        .iter()
        .any(|a| TcpStream::connect_timeout(a, CONNECT_TIMEOUT).is_ok())
}

/// A published port of a container: the engine's proxy accepts every connection, and closes
/// it at once when nothing listens behind it. So a connection it keeps open for a moment (or
/// on which the server speaks first) is a server listening.
pub fn tcp_held(host: &str, port: u16) -> bool {
    addrs(host, port).iter().any(|a| {
        let Ok(mut s) = TcpStream::connect_timeout(a, CONNECT_TIMEOUT) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(HELD));
        let mut byte = [0u8; 1];
        match s.read(&mut byte) {
            Ok(0) => false,
            Ok(_) => true,
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    })
}

/// How long a connection must stay open to count as held by a server ([`tcp_held`]).
const HELD: Duration = Duration::from_millis(150);

/// `GET path` answers with `status`, or with any status below 500 when none is required.
/// `Err` says what was wrong, for the user.
pub fn http(host: &str, port: u16, path: &str, status: Option<u16>) -> Result<(), String> {
    let mut last = String::from("nothing listens");
    for addr in addrs(host, port) {
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) else {
            continue;
        };
        let _ = stream.set_read_timeout(Some(HTTP_TIMEOUT));
        let _ = stream.set_write_timeout(Some(HTTP_TIMEOUT));
        let req =
            format!("GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n");
        if stream.write_all(req.as_bytes()).is_err() {
            last = "connection closed".into();
            continue;
        }
        let answer = read_answer(&mut stream);
        let Some(code) = parse_status(&answer) else {
            last = "no HTTP answer".into();
            continue;
        };
        let ok = match status {
            Some(want) => code == want,
            None => code < 500,
        };
        return if ok {
            Ok(())
        } else {
            Err(format!("HTTP {code} on {path}"))
        };
    }
    Err(last)
}

/// Most of an answer a probe reads: a health endpoint that sends more is closed on.
const MAX_ANSWER: usize = 1 << 20;

/// How long a probe waits for a body once the head has come: enough for a health answer,
/// short enough that a server that keeps the connection open (keep-alive ignoring
/// `Connection: close`, a stream) does not stall the supervisor, which probes one at a time.
const BODY_GRACE: Duration = Duration::from_millis(200);

/// The head of an HTTP answer, after reading the rest of it: up to its `Content-Length`, else
/// to the end of the connection, for at most [`BODY_GRACE`] after the head. Closing a socket
/// with unread data in it sends a reset, and the server, still writing its body, logs a
/// `ConnectionResetError` for every probe.
fn read_answer(stream: &mut TcpStream) -> Vec<u8> {
    let start = std::time::Instant::now();
    let mut deadline = start + HTTP_TIMEOUT;
    let mut head_seen = false;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if answer_complete(&buf) || buf.len() >= MAX_ANSWER {
            break;
        }
        if !head_seen && buf.windows(4).any(|w| w == b"\r\n\r\n") {
            head_seen = true;
            deadline = deadline.min(std::time::Instant::now() + BODY_GRACE);
        }
    }
    // Our side is done: a FIN, not a reset, once the server has said all it had to say.
    let _ = stream.shutdown(std::net::Shutdown::Both);
    buf
}

/// Whether `buf` holds a whole answer by its `Content-Length` (a server that keeps the
/// connection open would otherwise make the probe wait for its timeout).
fn answer_complete(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let length = head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())
            .flatten()
    });
    length.is_some_and(|n| buf.len() >= end + 4 + n)
}

/// The body of `GET path` on the loopback `port` (HTTP/1.0, for the demo).
pub fn get(port: u16, path: &str) -> Result<String, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream =
        TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| e.to_string())?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!("GET {path} HTTP/1.0\r\nHost: localhost:{port}\r\n\r\n");
    stream
        .write_all(req.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    Ok(text
        .split_once("\r\n\r\n")
        .map_or(text.as_str(), |(_, b)| b)
        .to_string())
}

fn parse_status(head: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(head).ok()?;
    let mut parts = text.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

/// A `log` probe: a line containing the text, or matching it as a regular expression.
pub struct LogMatcher {
    text: String,
    regex: Option<regex_lite::Regex>,
}

impl LogMatcher {
    pub fn new(text: &str) -> Self {
        Self {
            text: text.to_string(),
            regex: regex_lite::Regex::new(text).ok(),
        }
    }

    pub fn matches(&self, line: &str) -> bool {
        line.contains(&self.text) || self.regex.as_ref().is_some_and(|r| r.is_match(line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_connection_is_a_server_a_closed_one_is_not() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        // Like the engine's proxy with nothing behind it: accept, then close at once.
        let closer = std::thread::spawn(move || {
            let (c, _) = l.accept().unwrap();
            drop(c);
            l
        });
        assert!(!tcp_held("localhost", port));
        let l = closer.join().unwrap();
        let holder = std::thread::spawn(move || {
            let (c, _) = l.accept().unwrap();
            std::thread::sleep(HELD * 3);
            drop(c);
        });
        assert!(tcp_held("localhost", port));
        holder.join().unwrap();
    }

    #[test]
    fn status_line() {
        assert_eq!(parse_status(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(parse_status(b"HTTP/1.0 500"), Some(500));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH"), None);
    }

    #[test]
    fn answers_complete_by_their_length() {
        assert!(!answer_complete(
            b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n"
        ));
        assert!(!answer_complete(
            b"HTTP/1.0 200 OK\r\ncontent-length: 4\r\n\r\nok"
        ));
        assert!(answer_complete(
            b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nok!!"
        ));
        // No length: the answer ends with the connection.
        assert!(!answer_complete(b"HTTP/1.0 200 OK\r\n\r\nok"));
    }

    #[test]
    fn log_matcher_literal_and_regex() {
        assert!(LogMatcher::new("ready in").matches("vite ready in 300 ms"));
        assert!(LogMatcher::new(r"listening on \d+").matches("listening on 3001"));
        // Not a valid regex: still matched as text.
        assert!(LogMatcher::new("started (pid").matches("server started (pid 42)"));
        assert!(!LogMatcher::new("ready").matches("starting"));
    }

    #[test]
    fn tcp_and_http_against_a_real_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf);
            s.write_all(b"HTTP/1.1 503 Unavailable\r\n\r\n").unwrap();
            l
        });
        assert_eq!(
            http("localhost", port, "/health", None),
            Err("HTTP 503 on /health".into())
        );
        let l = server.join().unwrap();
        assert!(tcp("localhost", port));
        drop(l);
        assert!(!tcp("localhost", port));
    }
}
