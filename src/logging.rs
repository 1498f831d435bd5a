//! Logs go to syslog (what `logread` shows on OpenWrt) and, on request, to
//! stderr. Messages are short and stable so users can grep for them.

use std::io::Write;
use std::sync::Mutex;

use syslog::{Facility, Formatter3164, Logger, LoggerBackend};

use crate::core::Level;

struct Sink {
    syslog: Option<Logger<LoggerBackend, Formatter3164>>,
    stderr: bool,
    max: Level,
}

static SINK: Mutex<Option<Sink>> = Mutex::new(None);

/// Starts logging; safe to call again (a reload may change the level).
pub fn init(max: Level, stderr: bool) {
    let syslog = syslog::unix(Formatter3164 {
        facility: Facility::LOG_DAEMON,
        hostname: None,
        process: "wgroam".into(),
        pid: std::process::id(),
    })
    .ok();
    *SINK.lock().unwrap_or_else(|e| e.into_inner()) = Some(Sink {
        syslog,
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
    if let Some(s) = sink.syslog.as_mut() {
        let _ = match level {
            Level::Error => s.err(msg),
            Level::Warn => s.warning(msg),
            Level::Notice => s.notice(msg),
            Level::Info => s.info(msg),
            Level::Debug => s.debug(msg),
        };
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
            // A dependency's chatter (netlink-packet-route warns about every
            // newer kernel's longer attributes) is debug output, named by crate:
            // the agent reports the failures that matter itself.
            Some(krate) => emit(Level::Debug, &format!("{krate}: {}", record.args())),
            None => emit(level, &record.args().to_string()),
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::library_target;

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
}
