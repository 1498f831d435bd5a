//! The roam's end-to-end check: an HTTP GET over IPv6 *from an address in the
//! delegated prefix* (the seed's `curl -6 ifconfig.co`), so it proves the path
//! LAN clients use: source-specific route, tunnel, hub, internet.
//!
//! A minimal HTTP/1.1 client does the GET (an HTTP library cost ~120 KB of a
//! MIPS binary for one request): it binds the socket to the source address
//! before connecting, sends `Connection: close`, reads the status line, the
//! headers and at most [`BODY_LIMIT`] bytes of the body (plain, with
//! Content-Length or chunked), and follows up to [`MAX_REDIRECTS`] redirects
//! to http:// URLs. Plain http only (no TLS: the check runs inside the
//! tunnel and TLS would double the binary). One deadline bounds everything,
//! redirects included.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

/// Body bytes read for the status detail.
const BODY_LIMIT: usize = 256;
/// Larger headers fail the check.
const HEADER_LIMIT: usize = 16 * 1024;
/// What ureq, the HTTP library used before, followed by default.
const MAX_REDIRECTS: usize = 10;

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

/// GETs `url` from `source`; ok means a 2xx answer. The detail is one line
/// for `status` (the status code and the first bytes of the body, or why not).
pub fn check(url: &str, source: Option<IpAddr>, timeout: Duration) -> (bool, String) {
    let deadline = Instant::now() + timeout;
    let mut url = url.to_string();
    for _ in 0..=MAX_REDIRECTS {
        let target = match Url::parse(&url) {
            Ok(t) => t,
            Err(e) => return (false, format!("{url}: {e}")),
        };
        let answer = match get(&target, source, deadline) {
            Ok(a) => a,
            Err(e) => return (false, format!("{url}: {e}")),
        };
        if matches!(answer.code, 301 | 302 | 303 | 307 | 308) {
            if let Some(loc) = &answer.location {
                url = target.join(loc);
                continue;
            }
        }
        let body = String::from_utf8_lossy(&answer.body);
        let body: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
        let from = source.map_or(String::new(), |s| format!(" from {s}"));
        return (
            (200..300).contains(&answer.code),
            format!(
                "HTTP {}{from}: {}",
                answer.code,
                body.chars().take(80).collect::<String>()
            ),
        );
    }
    (false, format!("{url}: more than {MAX_REDIRECTS} redirects"))
}

/// An http:// URL, split for the request.
#[derive(Debug, PartialEq)]
struct Url<'a> {
    /// As written: the Host header (`host`, `host:port`, `[v6]:port`).
    authority: &'a str,
    /// Without the brackets of an IPv6 literal.
    host: &'a str,
    port: u16,
    /// Path and query as written (empty, or starting with `/` or `?`); no
    /// fragment.
    path: &'a str,
}

impl<'a> Url<'a> {
    fn parse(url: &'a str) -> Result<Self, String> {
        let rest = match url.strip_prefix("http://") {
            Some(r) => r,
            None if url.starts_with("https://") => {
                return Err("https is not built in (http:// only)".into());
            }
            None => return Err("not an http:// URL".into()),
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err("user info in the URL is not supported".into());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or("unclosed [ in the host")?;
            match after {
                "" => (h, None),
                p => (h, Some(p.strip_prefix(':').ok_or("junk after ]")?)),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err("no host in the URL".into());
        }
        let port = match port {
            None | Some("") => 80,
            Some(p) => p.parse().map_err(|_| format!("bad port '{p}'"))?,
        };
        Ok(Self {
            authority,
            host,
            port,
            path,
        })
    }

    /// Where a redirect's Location points, as a full URL.
    fn join(&self, location: &str) -> String {
        if location.contains("://") {
            location.to_string()
        } else if let Some(abs) = location.strip_prefix('/') {
            format!("http://{}/{abs}", self.authority)
        } else {
            let path = self.path.split('?').next().unwrap_or_default();
            let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
            let dir = if dir.is_empty() { "/" } else { dir };
            format!("http://{}{dir}{location}", self.authority)
        }
    }
}

/// What a GET answered: enough for the detail and for redirects.
#[derive(Debug, PartialEq)]
struct Answer {
    code: u16,
    location: Option<String>,
    /// The first [`BODY_LIMIT`] bytes at most.
    body: Vec<u8>,
}

fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
    }
    Ok(left)
}

fn get(url: &Url, source: Option<IpAddr>, deadline: Instant) -> io::Result<Answer> {
    let addrs: Vec<SocketAddr> = match url.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, url.port)],
        Err(_) => (url.host, url.port)
            .to_socket_addrs()
            .map_err(|e| io::Error::new(e.kind(), format!("resolve {}: {e}", url.host)))?
            .collect(),
    };
    let mut last = None;
    let mut stream = None;
    for addr in addrs {
        if source.is_some_and(|s| s.is_ipv6() != addr.is_ipv6()) {
            continue;
        }
        match connect_from(source, addr, remaining(deadline)?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let Some(mut stream) = stream else {
        return Err(last.unwrap_or_else(|| {
            let fam = if source.is_some_and(|s| s.is_ipv6()) {
                "IPv6"
            } else {
                "IPv4"
            };
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: no {fam} address", url.host),
            )
        }));
    };
    let slash = if url.path.starts_with('/') { "" } else { "/" };
    let request = format!(
        "GET {slash}{} HTTP/1.1\r\nHost: {}\r\nUser-Agent: wgroam/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        url.path,
        url.authority,
        env!("CARGO_PKG_VERSION")
    );
    stream.set_write_timeout(Some(remaining(deadline)?))?;
    stream.write_all(request.as_bytes()).map_err(timed_out)?;
    read_answer(&mut stream, deadline)
}

/// EAGAIN from a socket timeout reads as "Resource temporarily unavailable".
fn timed_out(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            io::Error::new(io::ErrorKind::TimedOut, "timed out")
        }
        _ => e,
    }
}

/// Reads the answer from a `Connection: close` stream.
fn read_answer(stream: &mut TcpStream, deadline: Instant) -> io::Result<Answer> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let mut fill = |buf: &mut Vec<u8>| -> io::Result<bool> {
        stream.set_read_timeout(Some(remaining(deadline)?))?;
        let n = loop {
            match stream.read(&mut chunk) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => break r.map_err(timed_out)?,
            }
        };
        buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    };
    let head_len = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > HEADER_LIMIT {
            return Err(bad("response header too large"));
        }
        if !fill(&mut buf)? {
            return Err(bad("connection closed before the response header ended"));
        }
    };
    let head = parse_head(&buf[..head_len])?;
    // Raw body bytes worth reading: chunk-size lines take some room too.
    let want = match (head.chunked, head.content_length) {
        (true, _) => 4 * BODY_LIMIT,
        (false, Some(n)) => n.min(BODY_LIMIT),
        (false, None) => BODY_LIMIT,
    };
    while buf.len() - head_len < want && fill(&mut buf)? {}
    let raw = &buf[head_len..];
    let mut body = if head.chunked {
        dechunk(raw)
    } else {
        raw.to_vec()
    };
    body.truncate(want.min(BODY_LIMIT));
    Ok(Answer {
        code: head.code,
        location: head.location,
        body,
    })
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

struct Head {
    code: u16,
    location: Option<String>,
    content_length: Option<usize>,
    chunked: bool,
}

/// The status line and the headers that matter, from `head` (which ends
/// with the empty line).
fn parse_head(head: &[u8]) -> io::Result<Head> {
    let text = std::str::from_utf8(head).map_err(|_| bad("response header is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status
        .strip_prefix("HTTP/1.")
        .and_then(|s| s.get(2..5).filter(|_| s.as_bytes().get(1) == Some(&b' ')))
        .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            bad(&format!(
                "not an HTTP/1 status line: '{}'",
                status.chars().take(40).collect::<String>()
            ))
        })?;
    let mut h = Head {
        code,
        location: None,
        content_length: None,
        chunked: false,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("location") {
            h.location = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("content-length") {
            h.content_length = value.parse().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            h.chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    Ok(h)
}

/// The data of the complete chunks at the start of a chunked body (the
/// part of a partly read chunk too).
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = find(raw, b"\r\n") {
        let size = std::str::from_utf8(&raw[..eol])
            .ok()
            .map(|l| l.split(';').next().unwrap_or_default().trim())
            .and_then(|l| usize::from_str_radix(l, 16).ok());
        let Some(size) = size.filter(|&n| n > 0) else {
            break;
        };
        raw = &raw[eol + 2..];
        let take = size.min(raw.len());
        out.extend_from_slice(&raw[..take]);
        if take < size || raw.len() < size + 2 {
            break;
        }
        raw = &raw[size + 2..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

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
                while find(&req, b"\r\n\r\n").is_none() {
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
        let req = &t.join().unwrap()[0];
        let lines: Vec<&str> = req.split("\r\n").collect();
        assert_eq!(lines[0], "GET /a/b?x=1 HTTP/1.1");
        assert!(
            lines.contains(&format!("Host: 127.0.0.1:{port}").as_str()),
            "{req}"
        );
        assert!(lines.contains(&"Connection: close"), "{req}");
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
        assert!(detail.ends_with("timed out"), "{detail}");
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
            detail.contains("not an HTTP/1 status line: 'SSH-2.0-OpenSSH'"),
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
    fn urls_split_into_host_port_and_path() {
        let u = Url::parse("http://[2001:db8::1]:8080/ip?x").unwrap();
        assert_eq!(
            u,
            Url {
                authority: "[2001:db8::1]:8080",
                host: "2001:db8::1",
                port: 8080,
                path: "/ip?x",
            }
        );
        let u = Url::parse("http://ifconfig.co").unwrap();
        assert_eq!((u.host, u.port, u.path), ("ifconfig.co", 80, ""));
        let u = Url::parse("http://[2001:db8::1]?q").unwrap();
        assert_eq!((u.host, u.port, u.path), ("2001:db8::1", 80, "?q"));
        assert!(Url::parse("http://h:99999/").is_err());
        assert!(Url::parse("http://[2001:db8::1/").is_err());
        assert!(Url::parse("http://u@h/").is_err());
        assert!(Url::parse("http:///x").is_err());
        assert!(Url::parse("ftp://h/").is_err());
    }

    #[test]
    fn redirect_locations_resolve_against_the_url() {
        let u = Url::parse("http://h:81/a/b?q").unwrap();
        assert_eq!(u.join("http://o/x"), "http://o/x");
        assert_eq!(u.join("/x?y"), "http://h:81/x?y");
        assert_eq!(u.join("c"), "http://h:81/a/c");
        assert_eq!(Url::parse("http://h").unwrap().join("c"), "http://h/c");
    }

    #[test]
    fn dechunk_keeps_the_data_of_partial_chunks() {
        assert_eq!(dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), b"abcde");
        assert_eq!(dechunk(b"A\r\n0123"), b"0123");
        assert_eq!(dechunk(b"zz\r\nabc"), b"");
    }
}
