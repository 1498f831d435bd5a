//! Logs go to syslog (what `logread` shows on OpenWrt) and, on request, to
//! stderr. Messages are short and stable so users can grep for them.

use std::io::{self, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::core::Level;

/// Where the local syslog daemon listens (OpenWrt's logd: `/dev/log`), in
/// the order the C library tries them.
const SYSLOG_PATHS: &[&str] = &["/dev/log", "/var/run/syslog", "/var/run/log"];
/// LOG_DAEMON, shifted into place.
const FACILITY_DAEMON: u8 = 3 << 3;

struct Sink {
    syslog: Option<Syslog>,
    paths: &'static [&'static str],
    stderr: bool,
    max: Level,
}

static SINK: Mutex<Option<Sink>> = Mutex::new(None);

/// Starts logging; safe to call again (a reload may change the level).
pub fn init(max: Level, stderr: bool) {
    init_with(SYSLOG_PATHS, max, stderr);
}

fn init_with(paths: &'static [&'static str], max: Level, stderr: bool) {
    *SINK.lock().unwrap_or_else(|e| e.into_inner()) = Some(Sink {
        syslog: Syslog::open(paths),
        paths,
        stderr,
        max,
    });
    log::set_max_level(to_filter(max));
    let _ = log::set_logger(&BRIDGE);
}

/// Writes one message at `level`.
pub fn emit(level: Level, msg: &str) {
    let mut guard = SINK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(sink) = guard.as_mut() else {
        return;
    };
    if level > sink.max {
        return;
    }
    if sink.stderr {
        let _ = writeln!(std::io::stderr(), "wgroam[{}]: {msg}", level_name(level));
    }
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let line = rfc3164(level, secs, std::process::id(), msg);
    let sent = sink.syslog.as_mut().map(|s| s.send(line.as_bytes()));
    if let Some(Err(_)) = sent {
        // logd restarted (a connected datagram socket then fails for good)
        // or went away: reconnect once, resend once, else drop the line.
        sink.syslog = Syslog::open(sink.paths);
        if let Some(s) = sink.syslog.as_mut() {
            let _ = s.send(line.as_bytes());
        }
    }
}

/// A connection to the local syslog daemon.
enum Syslog {
    Datagram(UnixDatagram),
    /// For daemons that listen on a stream socket: NUL ends a message.
    Stream(UnixStream),
}

impl Syslog {
    /// The first socket of `paths` that accepts a connection.
    fn open(paths: &[&str]) -> Option<Self> {
        paths.iter().find_map(|p| Self::connect(p).ok())
    }

    fn connect(path: &str) -> io::Result<Self> {
        let sock = UnixDatagram::unbound()?;
        match sock.connect(path) {
            Ok(()) => Ok(Self::Datagram(sock)),
            Err(e) if e.raw_os_error() == Some(libc::EPROTOTYPE) => {
                UnixStream::connect(path).map(Self::Stream)
            }
            Err(e) => Err(e),
        }
    }

    fn send(&mut self, line: &[u8]) -> io::Result<()> {
        match self {
            Self::Datagram(s) => s.send(line).map(drop),
            Self::Stream(s) => {
                s.write_all(line)?;
                s.write_all(&[0])
            }
        }
    }
}

/// One RFC 3164 message as `openlog("wgroam", LOG_PID, LOG_DAEMON)` would
/// send it: `<PRI>Mmm dd hh:mm:ss wgroam[PID]: MSG`, the time in UTC.
fn rfc3164(level: Level, unix_secs: u64, pid: u32, msg: &str) -> String {
    let severity = match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Notice => 5,
        Level::Info => 6,
        Level::Debug => 7,
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (month, day) = month_day(unix_secs / 86_400);
    let t = unix_secs % 86_400;
    format!(
        "<{}>{} {day:02} {:02}:{:02}:{:02} wgroam[{pid}]: {msg}",
        FACILITY_DAEMON | severity,
        MONTHS[month as usize - 1],
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// Month (1-12) and day of the month of a day count since 1970-01-01, in
/// the proleptic Gregorian calendar (Howard Hinnant's civil_from_days).
fn month_day(days: u64) -> (u64, u64) {
    let z = days + 719_468;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (month, day)
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Notice => "notice",
        Level::Info => "info",
        Level::Debug => "debug",
    }
}

fn to_filter(l: Level) -> log::LevelFilter {
    match l {
        Level::Error => log::LevelFilter::Error,
        Level::Warn => log::LevelFilter::Warn,
        Level::Notice | Level::Info => log::LevelFilter::Info,
        Level::Debug => log::LevelFilter::Debug,
    }
}

/// The crate a `log` record comes from, unless it is wgroam itself.
fn library_target(target: &str) -> Option<&str> {
    let krate = target.split("::").next().unwrap_or(target);
    (krate != env!("CARGO_CRATE_NAME")).then_some(krate)
}

/// Routes the `log` macros used by adapters into the same sink.
struct Bridge;
static BRIDGE: Bridge = Bridge;

impl log::Log for Bridge {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        let level = match record.level() {
            log::Level::Error => Level::Error,
            log::Level::Warn => Level::Warn,
            log::Level::Info => Level::Info,
            log::Level::Debug | log::Level::Trace => Level::Debug,
        };
        match library_target(record.target()) {
            // A dependency's chatter (netlink-packet-route, when we used it,
            // warned about every newer kernel's longer attributes) is debug
            // output, named by crate: the agent reports what matters itself.
            Some(krate) => emit(Level::Debug, &format!("{krate}: {}", record.args())),
            None => emit(level, &record.args().to_string()),
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependency_records_are_named_by_crate_and_own_records_are_not() {
        assert_eq!(
            library_target("netlink_packet_route::link::af_spec::inet6"),
            Some("netlink_packet_route")
        );
        assert_eq!(library_target("ureq"), Some("ureq"));
        assert_eq!(library_target("wgroam::rtnl"), None);
        assert_eq!(library_target("wgroam"), None);
    }

    #[test]
    fn messages_are_rfc3164_daemon_facility_in_utc() {
        assert_eq!(
            rfc3164(Level::Error, 0, 1, "x"),
            "<27>Jan 01 00:00:00 wgroam[1]: x"
        );
        // 2023-11-14T22:13:20Z
        assert_eq!(
            rfc3164(
                Level::Notice,
                1_700_000_000,
                4242,
                "hub: peer abc= at 192.0.2.1:51820"
            ),
            "<29>Nov 14 22:13:20 wgroam[4242]: hub: peer abc= at 192.0.2.1:51820"
        );
        assert!(rfc3164(Level::Warn, 0, 1, "").starts_with("<28>"));
        assert!(rfc3164(Level::Info, 0, 1, "").starts_with("<30>"));
        assert!(rfc3164(Level::Debug, 0, 1, "").starts_with("<31>"));
    }

    #[test]
    fn calendar_dates_match_known_days() {
        let day = |y: i32, m: u32, d: u32| {
            // Days since the epoch by counting, independent of month_day.
            let mut n: u64 = 0;
            for yy in 1970..y {
                let leap = (yy % 4 == 0 && yy % 100 != 0) || yy % 400 == 0;
                n += if leap { 366 } else { 365 };
            }
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let lens = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            n + lens[..m as usize - 1].iter().sum::<u64>() + u64::from(d) - 1
        };
        for (y, m, d) in [
            (1970, 1, 1),
            (2000, 2, 29),
            (2000, 3, 1),
            (2023, 12, 31),
            (2024, 2, 29),
            (2100, 3, 1),
            (2106, 2, 7),
        ] {
            assert_eq!(
                month_day(day(y, m, d)),
                (u64::from(m), u64::from(d)),
                "{y}-{m}-{d}"
            );
        }
    }

    #[test]
    fn lines_reach_a_datagram_syslog_socket_and_survive_its_restart() {
        let dir = std::env::temp_dir().join(format!("wgroam-log-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path: &'static str = Box::leak(
            dir.join("log")
                .to_str()
                .unwrap()
                .to_string()
                .into_boxed_str(),
        );
        let paths: &'static [&'static str] = Box::leak(Box::new([path]));
        let bind = || {
            let s = UnixDatagram::bind(path).unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            s
        };
        // Other tests may log through the same global sink meanwhile: wait
        // for the line that ends with `tail`.
        let recv = |s: &UnixDatagram, tail: &str| loop {
            let mut b = [0u8; 512];
            let n = s.recv(&mut b).unwrap();
            let line = String::from_utf8(b[..n].to_vec()).unwrap();
            if line.ends_with(tail) {
                return line;
            }
        };
        let server = bind();
        init_with(paths, Level::Info, false);
        emit(Level::Debug, "dropped: below the level of the syslog test");
        emit(Level::Warn, "first line of the syslog test");
        let got = recv(&server, "syslog test");
        let want = format!(
            "wgroam[{}]: first line of the syslog test",
            std::process::id()
        );
        assert!(got.starts_with("<28>") && got.ends_with(&want), "{got}");
        // The daemon restarts: new socket at the same path.
        drop(server);
        std::fs::remove_file(path).unwrap();
        let server = bind();
        emit(Level::Error, "second line of the syslog test");
        let got = recv(&server, "syslog test");
        assert!(
            got.starts_with("<27>") && got.ends_with("]: second line of the syslog test"),
            "{got}"
        );
        *SINK.lock().unwrap() = None;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
