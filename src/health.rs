//! The roam's end-to-end check: an HTTP GET over IPv6 *from an address in the
//! delegated prefix* (the seed's `curl -6 ifconfig.co`), so it proves the path
//! LAN clients use: source-specific route, tunnel, hub, internet.
//!
//! ureq does the HTTP; the one thing it cannot do out of the box is choose the
//! source address, so the connection comes from a small connector that binds
//! the socket before connecting. Plain http only (no TLS in the default build:
//! the check runs inside the tunnel and TLS would double the binary).

use std::fmt;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::time::Duration;

use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, LazyBuffers, NextTimeout, Transport,
};

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
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build();
    let agent = ureq::Agent::with_parts(
        config,
        BoundConnector { source },
        DefaultResolver::default(),
    );
    match agent.get(url).call() {
        Ok(mut resp) => {
            let code = resp.status().as_u16();
            let body = resp
                .body_mut()
                .with_config()
                .limit(256)
                .read_to_string()
                .unwrap_or_default();
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
}
