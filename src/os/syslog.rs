//! Logs go to syslog (what `logread` shows on OpenWrt) and, on request, to
//! stderr. Messages are short and stable so users can grep for them.

use std::fmt::Display;
use std::io::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use syslog::{LogFormat, Logger, LoggerBackend, Severity};

use crate::core::Level;

/// Where the local syslog daemon listens (OpenWrt's logd: `/dev/log`), in
/// the order the C library (and `syslog::unix`) tries them.
const SYSLOG_PATHS: &[&str] = &["/dev/log", "/var/run/syslog", "/var/run/log"];

type Syslog = Logger<LoggerBackend, Daemon3164>;

/// LOG_DAEMON, shifted into place.
const FACILITY_DAEMON: u8 = 3 << 3;

/// `openlog("wgroam", LOG_PID, LOG_DAEMON)` in RFC 3164:
/// `<PRI>Mmm dd hh:mm:ss wgroam[PID]: MSG`, the time in UTC: byte for byte
/// the line of the crate's `Formatter3164` (the tests compare them), with
/// the timestamp written here. `Formatter3164` parses a `time` format
/// description at every line and links the `time` crate's parser and
/// formatter for it: 60 KB of a MIPS binary for one timestamp.
#[derive(Clone, Copy)]
struct Daemon3164 {
    pid: u32,
}

impl<T: Display> LogFormat<T> for Daemon3164 {
    fn format<W: Write>(&self, w: &mut W, severity: Severity, message: T) -> syslog::Result<()> {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        write!(w, "{}{message}", head(severity, secs, self.pid)).map_err(syslog::Error::Write)
    }
}

/// Everything of the line before the message.
fn head(severity: Severity, unix_secs: u64, pid: u32) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (month, day) = month_day(unix_secs / 86_400);
    let t = unix_secs % 86_400;
    format!(
        "<{}>{} {day:02} {:02}:{:02}:{:02} wgroam[{pid}]: ",
        FACILITY_DAEMON | severity as u8,
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
        syslog: open(paths),
        paths,
        stderr,
        max,
    });
    log::set_max_level(to_filter(max));
    let _ = log::set_logger(&BRIDGE);
}

/// The syslog crate's connection to the first socket of `paths` that
/// accepts one (datagram, or stream with NUL terminators, as the crate
/// decides), writing the lines `logread` shows.
fn open(paths: &[&str]) -> Option<Syslog> {
    let formatter = Daemon3164 {
        pid: std::process::id(),
    };
    paths
        .iter()
        .find_map(|p| syslog::unix_custom(formatter, p).ok())
}

fn send(s: &mut Syslog, level: Level, msg: &str) -> syslog::Result<()> {
    match level {
        Level::Error => s.err(msg),
        Level::Warn => s.warning(msg),
        Level::Notice => s.notice(msg),
        Level::Info => s.info(msg),
        Level::Debug => s.debug(msg),
    }
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
    let sent = sink.syslog.as_mut().map(|s| send(s, level, msg));
    if let Some(Err(_)) = sent {
        // logd restarted (a connected datagram socket then fails for good)
        // or went away: reconnect once, resend once, else drop the line.
        sink.syslog = open(sink.paths);
        if let Some(s) = sink.syslog.as_mut() {
            let _ = send(s, level, msg);
        }
    }
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
    use std::os::unix::net::UnixDatagram;

    /// The line wgroam wrote itself before it used the syslog crate (what
    /// `logread` showed): the reference the crate's output must match byte
    /// for byte. `<PRI>Mmm dd hh:mm:ss wgroam[PID]: MSG`, the time in UTC.
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
            (3 << 3) | severity,
            MONTHS[month as usize - 1],
            t / 3600,
            t / 60 % 60,
            t % 60
        )
    }

    fn unix_now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn dependency_records_are_named_by_crate_and_own_records_are_not() {
        assert_eq!(
            library_target("netlink_packet_route::link::af_spec::inet6"),
            Some("netlink_packet_route")
        );
        assert_eq!(library_target("ureq"), Some("ureq"));
        assert_eq!(library_target("wgroam::os::rtnl"), None);
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
    fn lines_are_byte_for_byte_the_crates_formatter3164() {
        use syslog::Formatter3164;
        let theirs = Formatter3164 {
            facility: syslog::Facility::LOG_DAEMON,
            hostname: None,
            process: "wgroam".into(),
            pid: 4242,
        };
        let ours = Daemon3164 { pid: 4242 };
        for severity in [
            Severity::LOG_ERR,
            Severity::LOG_WARNING,
            Severity::LOG_NOTICE,
            Severity::LOG_INFO,
            Severity::LOG_DEBUG,
        ] {
            let msg = "hub: peer abc= at 192.0.2.1:51820";
            // The two clocks may straddle a second: retry once.
            let same = (0..2).any(|_| {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                ours.format(&mut a, severity, msg).unwrap();
                theirs.format(&mut b, severity, msg).unwrap();
                a == b
            });
            assert!(same, "severity {}", severity as u8);
        }
        // Days of the month below 10 pad with 0, as time's [day] does.
        assert!(head(Severity::LOG_ERR, 0, 1).starts_with("<27>Jan 01 00:00:00 "));
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
        // The exact line logd gets, as wgroam wrote it before the crate
        // (any second between `before` and after the send).
        let pid = std::process::id();
        let assert_line = |got: &str, before: u64, level: Level, msg: &str| {
            let wants: Vec<String> = (before..=unix_now())
                .map(|t| rfc3164(level, t, pid, msg))
                .collect();
            assert!(wants.iter().any(|w| w == got), "{got:?} not in {wants:?}");
        };
        let server = bind();
        init_with(paths, Level::Debug, false);
        for (level, msg) in [
            (Level::Error, "error line of the syslog test"),
            (Level::Warn, "warn line of the syslog test"),
            (
                Level::Notice,
                "hub: peer abc= at 192.0.2.1:51820 of the syslog test",
            ),
            (Level::Info, "info line of the syslog test"),
            (Level::Debug, "debug line of the syslog test"),
        ] {
            let before = unix_now();
            emit(level, msg);
            assert_line(&recv(&server, "syslog test"), before, level, msg);
        }
        init_with(paths, Level::Info, false);
        emit(Level::Debug, "dropped: below the level of the syslog test");
        let before = unix_now();
        emit(Level::Warn, "first line of the syslog test");
        let got = recv(&server, "syslog test");
        assert_line(&got, before, Level::Warn, "first line of the syslog test");
        // The daemon restarts: new socket at the same path.
        drop(server);
        std::fs::remove_file(path).unwrap();
        let server = bind();
        let before = unix_now();
        emit(Level::Error, "second line of the syslog test");
        let got = recv(&server, "syslog test");
        assert_line(&got, before, Level::Error, "second line of the syslog test");
        *SINK.lock().unwrap() = None;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
