//! The roam's end-to-end check: an HTTP GET over IPv6 *from an address in the
//! delegated prefix* (the seed's `curl -6 ifconfig.co`), so it proves the path
//! LAN clients use: source-specific route, tunnel, hub, internet.
//!
//! ureq does the HTTP (status line, headers, Content-Length or chunked bodies,
//! up to [`MAX_REDIRECTS`] redirects, one global deadline); the one thing it
//! cannot do out of the box is choose the source address, so the connection
//! comes from a small connector that binds the socket before connecting.
//!
//! Plain http only: ureq is built with `default-features = false`, so it has
//! no TLS (the check runs inside the tunnel). HTTPS would be ureq's `rustls`
//! feature (rustls + ring + webpki-roots: the README says what it costs) and
//! the connector chained with ureq's `RustlsConnector`.

use std::fmt;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::time::Duration;

use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, LazyBuffers, NextTimeout, Transport,
};

/// Body bytes read for the status detail.
const BODY_LIMIT: u64 = 256;
/// What ureq follows by default, written out.
const MAX_REDIRECTS: u32 = 10;

/// Opens TCP connections from one fixed source address.
#[derive(Debug)]
struct BoundConnector {
    source: Option<IpAddr>,
}

struct BoundTransport {
    stream: TcpStream,
    buffers: LazyBuffers,
}

impl fmt::Debug for BoundTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundTransport").finish()
    }
}

fn sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large enough and aligned for sockaddr_in.
            let sin = unsafe { &mut *(&raw mut ss).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &mut *(&raw mut ss).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// A TCP connection from `source` (port chosen by the kernel) to `to`.
pub fn connect_from(
    source: Option<IpAddr>,
    to: SocketAddr,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    let family = if to.is_ipv6() {
        libc::AF_INET6
    } else {
        libc::AF_INET
    };
    // SAFETY: plain syscall; the descriptor is owned by the TcpStream below.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket we own.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    // connect(2) honours the send timeout.
    stream.set_write_timeout(Some(timeout))?;
    stream.set_read_timeout(Some(timeout))?;
    if let Some(src) = source {
        let (ss, len) = sockaddr(SocketAddr::new(src, 0));
        // SAFETY: ss holds a valid address of `len` bytes.
        if unsafe { libc::bind(fd, (&raw const ss).cast(), len) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    let (ss, len) = sockaddr(to);
    // SAFETY: as above.
    if unsafe { libc::connect(fd, (&raw const ss).cast(), len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stream)
}

impl Connector for BoundConnector {
    type Out = BoundTransport;

    fn connect(
        &self,
        details: &ConnectionDetails,
        _chained: Option<()>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        // A redirect to https:// lands here: no TLS follows this connector.
        if details.uri.scheme_str() == Some("https") {
            return Err(ureq::Error::Io(std::io::Error::other(
                "https is not built in (http:// only)",
            )));
        }
        let timeout = details
            .timeout
            .not_zero()
            .map_or(Duration::from_secs(10), |t| *t);
        let mut last = None;
        for &addr in details.addrs.iter() {
            if self.source.is_some_and(|s| s.is_ipv6() != addr.is_ipv6()) {
                continue;
            }
            match connect_from(self.source, addr, timeout) {
                Ok(stream) => {
                    let c = details.config;
                    return Ok(Some(BoundTransport {
                        stream,
                        buffers: LazyBuffers::new(c.input_buffer_size(), c.output_buffer_size()),
                    }));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or(ureq::Error::HostNotFound, ureq::Error::Io))
    }
}

impl Transport for BoundTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let t = timeout.for_write();
        self.stream.set_write_timeout(t.not_zero().map(|d| *d))?;
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                ureq::Error::Timeout(t.reason)
            }
            _ => e.into(),
        })
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let t = timeout.for_read();
        self.stream.set_read_timeout(t.not_zero().map(|d| *d))?;
        let input = self.buffers.input_append_buf();
        let n = self.stream.read(input).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                ureq::Error::Timeout(t.reason)
            }
            _ => e.into(),
        })?;
        self.buffers.input_appended(n);
        Ok(n > 0)
    }

    fn is_open(&mut self) -> bool {
        true
    }
}

/// GETs `url` from `source`; ok means a 2xx answer. The detail is one line
/// for `status` (the status code and the first bytes of the body, or why not).
pub fn check(url: &str, source: Option<IpAddr>, timeout: Duration) -> (bool, String) {
    // Our connector is the whole chain: without TLS in it, an https URL
    // would get plain HTTP on port 443. Say so instead.
    if url.starts_with("https://") {
        return (
            false,
            format!("{url}: https is not built in (http:// only)"),
        );
    }
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(MAX_REDIRECTS)
        // Straight from the source address, never via an HTTP_PROXY or
        // ALL_PROXY of the environment (ureq's default reads them).
        .proxy(None)
        .user_agent(concat!("wgroam/", env!("CARGO_PKG_VERSION")))
        .build();
    let agent = ureq::Agent::with_parts(
        config,
        BoundConnector { source },
        DefaultResolver::default(),
    );
    // Connection: close, as before: one request per connection, nothing
    // pooled between checks (the agent is dropped anyway).
    match agent.get(url).header("Connection", "close").call() {
        Ok(mut resp) => {
            let code = resp.status().as_u16();
            // The first bytes of a long body, not nothing (ureq's limit()
            // fails the whole read when the body is longer).
            let mut raw = Vec::new();
            let _ = resp
                .body_mut()
                .as_reader()
                .take(BODY_LIMIT)
                .read_to_end(&mut raw);
            let body = String::from_utf8_lossy(&raw);
            let body: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
            let from = source.map_or(String::new(), |s| format!(" from {s}"));
            (
                (200..300).contains(&code),
                format!(
                    "HTTP {code}{from}: {}",
                    body.chars().take(80).collect::<String>()
                ),
            )
        }
        Err(e) => (false, format!("{url}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::time::Instant;

    #[test]
    fn gets_from_the_chosen_source_address() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut c, peer) = server.accept().unwrap();
            let mut req = [0u8; 512];
            let n = c.read(&mut req).unwrap();
            let body = format!("{}", peer.ip());
            write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            String::from_utf8_lossy(&req[..n]).to_string()
        });
        // 127.0.0.2 is ours on every Linux loopback: proves the bind.
        let (ok, detail) = check(
            &format!("http://127.0.0.1:{port}/ip"),
            Some("127.0.0.2".parse().unwrap()),
            Duration::from_secs(5),
        );
        let request = t.join().unwrap();
        assert!(ok, "{detail}");
        assert_eq!(detail, "HTTP 200 from 127.0.0.2: 127.0.0.2");
        assert!(request.starts_with("GET /ip HTTP/1.1"), "{request}");
    }

    #[test]
    fn failures_are_one_line() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (ok, detail) = check(
            &format!("http://127.0.0.1:{port}/"),
            None,
            Duration::from_secs(2),
        );
        assert!(!ok);
        assert!(
            !detail.contains('\n') && detail.contains("127.0.0.1"),
            "{detail}"
        );
    }

    /// A server on 127.0.0.1 answering each of `answers` (raw bytes, one
    /// connection each, in order); returns its port and the requests it got.
    fn serve(answers: Vec<Vec<u8>>) -> (u16, std::thread::JoinHandle<Vec<String>>) {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let mut requests = Vec::new();
            for a in answers {
                let (mut c, _) = server.accept().unwrap();
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut req = Vec::new();
                let mut b = [0u8; 512];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = c.read(&mut b).unwrap();
                    assert!(n > 0, "client closed mid-request");
                    req.extend_from_slice(&b[..n]);
                }
                requests.push(String::from_utf8(req).unwrap());
                c.write_all(&a).unwrap();
            }
            requests
        });
        (port, t)
    }

    #[test]
    fn sends_a_plain_get_with_host_and_close() {
        let (port, t) = serve(vec![
            b"HTTP/1.0 204 No Content\r\nContent-Length: 0\r\n\r\n".to_vec(),
        ]);
        let (ok, detail) = check(
            &format!("http://127.0.0.1:{port}/a/b?x=1#frag"),
            None,
            Duration::from_secs(5),
        );
        assert!(ok, "{detail}");
        assert_eq!(detail, "HTTP 204: ");
        let req = &t.join().unwrap()[0].to_ascii_lowercase();
        let lines: Vec<&str> = req.split("\r\n").collect();
        assert_eq!(lines[0], "get /a/b?x=1 http/1.1");
        assert!(
            lines.contains(&format!("host: 127.0.0.1:{port}").as_str()),
            "{req}"
        );
        assert!(lines.contains(&"connection: close"), "{req}");
        assert!(lines.contains(&"user-agent: wgroam/0.1.0"), "{req}");
    }

    #[test]
    fn reads_a_chunked_body() {
        let (port, t) = serve(vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n"
                .to_vec(),
        ]);
        let (ok, detail) = check(
            &format!("http://127.0.0.1:{port}"),
            None,
            Duration::from_secs(5),
        );
        t.join().unwrap();
        assert!(ok, "{detail}");
        assert_eq!(detail, "HTTP 200: hello, world");
    }

    #[test]
    fn follows_redirects_and_reports_the_final_answer() {
        let (port, t) = serve(vec![
            b"HTTP/1.1 301 Moved\r\nLocation: /next\r\nContent-Length: 0\r\n\r\n".to_vec(),
            b"HTTP/1.1 302 Found\r\nlocation: last\r\n\r\n".to_vec(),
            b"HTTP/1.1 503 Busy\r\n\r\ntry   later\n".to_vec(),
        ]);
        let (ok, detail) = check(
            &format!("http://127.0.0.1:{port}/first"),
            None,
            Duration::from_secs(5),
        );
        let reqs = t.join().unwrap();
        assert!(!ok, "a 503 is not healthy: {detail}");
        assert_eq!(detail, "HTTP 503: try later");
        let firsts: Vec<&str> = reqs.iter().map(|r| r.lines().next().unwrap()).collect();
        assert_eq!(
            firsts,
            [
                "GET /first HTTP/1.1",
                "GET /next HTTP/1.1",
                "GET /last HTTP/1.1"
            ]
        );
    }

    #[test]
    fn a_redirect_to_https_fails_without_a_plain_request_to_443() {
        let (port, t) = serve(vec![
            b"HTTP/1.1 302 Found\r\nLocation: https://127.0.0.1:1/x\r\nContent-Length: 0\r\n\r\n"
                .to_vec(),
        ]);
        let (ok, detail) = check(
            &format!("http://127.0.0.1:{port}/"),
            None,
            Duration::from_secs(5),
        );
        t.join().unwrap();
        assert!(!ok);
        assert!(
            detail.ends_with("https is not built in (http:// only)"),
            "{detail}"
        );
    }

    #[test]
    fn long_bodies_are_cut_to_80_characters() {
        let body = "x".repeat(5000);
        let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n{body}");
        let (port, t) = serve(vec![answer.into_bytes()]);
        let (ok, detail) = check(
            &format!("http://127.0.0.1:{port}/"),
            None,
            Duration::from_secs(5),
        );
        t.join().unwrap();
        assert!(ok, "{detail}");
        assert_eq!(detail, format!("HTTP 200: {}", "x".repeat(80)));
    }

    #[test]
    fn a_silent_server_times_out_within_the_deadline() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let start = Instant::now();
        // The kernel completes the handshake (backlog); nobody answers.
        let (ok, detail) = check(
            &format!("http://127.0.0.1:{port}/"),
            None,
            Duration::from_millis(300),
        );
        let took = start.elapsed();
        drop(server);
        assert!(!ok);
        assert!(detail.ends_with("timeout: global"), "{detail}");
        assert!(took < Duration::from_secs(2), "took {took:?}");
    }

    #[test]
    fn garbage_and_https_fail_with_a_reason() {
        let (port, t) = serve(vec![b"SSH-2.0-OpenSSH\r\n\r\n".to_vec()]);
        let (ok, detail) = check(
            &format!("http://127.0.0.1:{port}/"),
            None,
            Duration::from_secs(5),
        );
        t.join().unwrap();
        assert!(!ok);
        assert!(
            detail.ends_with(": protocol: http parse fail: invalid HTTP version"),
            "{detail}"
        );
        let (ok, detail) = check("https://example.com/", None, Duration::from_secs(1));
        assert!(!ok);
        assert_eq!(
            detail,
            "https://example.com/: https is not built in (http:// only)"
        );
    }

    #[test]
    fn an_ipv6_literal_with_a_port_and_a_query() {
        let Ok(server) = TcpListener::bind("[::1]:0") else {
            eprintln!("skipped: no IPv6 loopback");
            return;
        };
        let port = server.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut c, _) = server.accept().unwrap();
            let mut req = [0u8; 512];
            let n = c.read(&mut req).unwrap();
            c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
            String::from_utf8_lossy(&req[..n]).to_string()
        });
        let (ok, detail) = check(
            &format!("http://[::1]:{port}?q"),
            Some("::1".parse().unwrap()),
            Duration::from_secs(5),
        );
        let req = t.join().unwrap();
        assert!(ok, "{detail}");
        assert_eq!(detail, "HTTP 200 from ::1: ok");
        assert!(req.starts_with("GET /?q HTTP/1.1\r\n"), "{req}");
        assert!(
            req.to_ascii_lowercase()
                .contains(&format!("\r\nhost: [::1]:{port}\r\n")),
            "{req}"
        );
    }

    #[test]
    fn bad_urls_fail_with_a_reason() {
        for url in ["http://h:99999/", "http://[2001:db8::1/", "ftp://h/"] {
            let (ok, detail) = check(url, None, Duration::from_secs(1));
            assert!(!ok, "{url}");
            assert!(
                detail.starts_with(url) && !detail.contains('\n'),
                "{detail}"
            );
        }
    }
}
