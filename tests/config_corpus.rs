//! Malformed configurations through the REAL binary: every file of
//! tests/fixtures/config-corpus/ (first line: a comment saying what is wrong;
//! sibling `.expect`: a substring the error output must contain), plus paths
//! the test makes itself (empty file, directory, unreadable, missing, symlink
//! loop, a file used as a directory).
//!
//! Each is run as `wgroam check --config F` and as `wgroam run --config F
//! --state-dir TMP`: both must exit 2, print nothing on stdout, print one
//! clean line per problem on stderr naming where the problem is, and write
//! nothing: the state directory and the uci config and save directories stay
//! empty, and uci is never even started (WGROAM_UCI_BIN points to a stand-in
//! that leaves a mark when run).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_wgroam");
/// A rejected config is refused at once; a run that lasts longer started.
const LIMIT: Duration = Duration::from_secs(10);

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config-corpus")
}

mod common;
use common::Scratch;

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` with output to files, killing it after [`LIMIT`].
fn run_bounded(mut cmd: Command, out_dir: &Path) -> Outcome {
    let out = out_dir.join("stdout");
    let err = out_dir.join("stderr");
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap());
    let mut child = cmd.spawn().expect("start wgroam");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} still running after {LIMIT:?}: it accepted the config; stderr: {}",
                fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Outcome {
        code: status.code(),
        stdout: String::from_utf8_lossy(&fs::read(&out).unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&fs::read(&err).unwrap()).into_owned(),
    }
}

fn is_empty_dir(d: &Path) -> bool {
    fs::read_dir(d).unwrap().next().is_none()
}

/// Runs `wrap + wgroam check` and `wrap + wgroam run` on `config` and checks
/// the contract. Returns the problems reported (check's stderr lines).
fn assert_rejected(case: &str, config: &Path, expect: &str, wrap: &[&str]) -> Vec<String> {
    let mut lines_of_check = Vec::new();
    for mode in ["check", "run"] {
        let s = Scratch::new(case);
        let (state, confdir, savedir) = (s.path("state"), s.path("etc"), s.path("save"));
        for d in [&state, &confdir, &savedir] {
            fs::create_dir(d).unwrap();
        }
        let marker = s.path("uci-was-run");
        let fake_uci = s.path("uci");
        fs::write(
            &fake_uci,
            format!("#!/bin/sh\ntouch '{}'\nexit 1\n", marker.display()),
        )
        .unwrap();
        fs::set_permissions(&fake_uci, fs::Permissions::from_mode(0o755)).unwrap();

        let mut cmd = Command::new(wrap.first().copied().unwrap_or(BIN));
        if !wrap.is_empty() {
            cmd.args(&wrap[1..]).arg(BIN);
        }
        cmd.arg(mode).arg("--config").arg(config);
        if mode == "run" {
            cmd.arg("--state-dir").arg(&state).arg("--stderr");
        }
        cmd.arg("--uci-confdir")
            .arg(&confdir)
            .arg("--uci-savedir")
            .arg(&savedir)
            .env("WGROAM_UCI_BIN", &fake_uci);
        let o = run_bounded(cmd, &s.0);
        let what = format!("{case} ({mode})");

        assert_eq!(o.code, Some(2), "{what}: exit code; stderr:\n{}", o.stderr);
        assert_eq!(o.stdout, "", "{what}: stdout must be empty");
        assert!(
            o.stderr.contains(expect),
            "{what}: stderr lacks {expect:?}:\n{}",
            o.stderr
        );
        assert!(
            o.stderr.ends_with('\n'),
            "{what}: unterminated: {:?}",
            o.stderr
        );
        let lines: Vec<&str> = o.stderr.lines().collect();
        assert!(
            (1..=4).contains(&lines.len()),
            "{what}: expected one line per problem, got {}:\n{}",
            lines.len(),
            o.stderr
        );
        let shown = config.display().to_string();
        for l in &lines {
            assert!(!l.trim().is_empty(), "{what}: empty line in {:?}", o.stderr);
            assert!(
                !l.chars().any(char::is_control),
                "{what}: control character in {l:?}"
            );
            assert!(l.len() <= 300, "{what}: overlong line {l:?}");
            assert!(
                l.starts_with("wgroam.") || l.starts_with("wgroam: ") || l.starts_with(&shown),
                "{what}: line does not say where the problem is: {l:?}"
            );
            assert!(
                l.contains("expected") || l.contains("add "),
                "{what}: line does not say what is expected: {l:?}"
            );
        }
        assert!(is_empty_dir(&state), "{what}: wrote into the state dir");
        assert!(is_empty_dir(&confdir), "{what}: wrote into the uci confdir");
        assert!(is_empty_dir(&savedir), "{what}: wrote into the uci savedir");
        assert!(!marker.exists(), "{what}: ran uci");
        if mode == "check" {
            lines_of_check = lines.iter().map(|l| l.to_string()).collect();
        } else {
            // Same verdict both ways.
            let run_lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            assert_eq!(run_lines, lines_of_check, "{case}: run and check disagree");
        }
    }
    lines_of_check
}

/// (config, expected substring) for every corpus file.
fn corpus() -> Vec<(PathBuf, String)> {
    let mut cases = Vec::new();
    let mut names: Vec<PathBuf> = fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in &names {
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        match ext {
            "conf" => {
                let expect_path = p.with_extension("expect");
                let expect = fs::read_to_string(&expect_path)
                    .unwrap_or_else(|e| panic!("{}: no sibling .expect ({e})", p.display()));
                let expect = expect.trim_end_matches('\n').to_string();
                assert!(!expect.is_empty(), "{}: empty", expect_path.display());
                assert!(
                    !expect.contains('\n'),
                    "{}: one line",
                    expect_path.display()
                );
                cases.push((p.clone(), expect));
            }
            "expect" => assert!(
                p.with_extension("conf").is_file(),
                "{}: no sibling .conf",
                p.display()
            ),
            _ => panic!("{}: unexpected file in the corpus", p.display()),
        }
    }
    cases
}

#[test]
fn corpus_files_say_what_is_wrong() {
    let cases = corpus();
    assert!(cases.len() >= 30, "only {} corpus files", cases.len());
    for (p, _) in &cases {
        let bytes = fs::read(p).unwrap();
        let first = bytes.split(|&b| b == b'\n').next().unwrap();
        let first = std::str::from_utf8(first).expect("first line is text");
        assert!(
            first.starts_with("# ") && first.len() > 10,
            "{}: first line must be a comment saying what is wrong, got {first:?}",
            p.display()
        );
    }
}

#[test]
fn every_corpus_config_is_refused_with_one_line_per_problem() {
    let cases = corpus();
    for (p, expect) in &cases {
        let case = p.file_stem().unwrap().to_str().unwrap();
        assert_rejected(case, p, expect, &[]);
    }
    eprintln!("{} corpus configs refused by check and run", cases.len());
}

#[test]
fn option_problems_name_section_option_value_and_expectation() {
    // The format of the config's problem lines, on every corpus case that
    // reports a bad value.
    let mut seen = 0;
    for (p, expect) in corpus() {
        if !expect.contains(" is not valid; expected ") {
            continue;
        }
        let case = p.file_stem().unwrap().to_str().unwrap().to_string();
        let lines = assert_rejected(&case, &p, &expect, &[]);
        let l = lines
            .iter()
            .find(|l| l.contains(" is not valid; expected "))
            .unwrap();
        let (head, rest) = l.split_once(": '").unwrap();
        let parts: Vec<&str> = head.split('.').collect();
        assert_eq!(parts.len(), 3, "{case}: {l}");
        assert_eq!(parts[0], "wgroam", "{case}: {l}");
        assert!(rest.contains("' is not valid; expected "), "{case}: {l}");
        seen += 1;
    }
    assert!(seen >= 20, "only {seen} value cases");
}

#[test]
fn empty_file_is_refused() {
    let s = Scratch::new("empty");
    let f = s.path("wgroam");
    fs::write(&f, b"").unwrap();
    assert_rejected("empty", &f, "wgroam: no 'agent' section; add", &[]);
}

#[test]
fn generated_binary_garbage_is_refused() {
    // Every byte value, in a deterministic scramble: not text.
    let s = Scratch::new("garbage");
    let f = s.path("wgroam");
    let bytes: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(&f, &bytes).unwrap();
    assert_rejected("garbage", &f, "not a text file; expected uci syntax", &[]);
}

#[test]
fn a_directory_is_not_a_config() {
    let s = Scratch::new("dir");
    let d = s.path("wgroam");
    fs::create_dir(&d).unwrap();
    assert_rejected(
        "directory",
        &d,
        "cannot read (Is a directory (os error 21)); expected a uci config file, not a directory",
        &[],
    );
}

#[test]
fn a_missing_config_says_how_to_fix() {
    let s = Scratch::new("missing");
    assert_rejected(
        "missing",
        &s.path("nope/wgroam"),
        "cannot read (No such file or directory (os error 2)); expected a uci config file there; create it or pass --config PATH",
        &[],
    );
}

#[test]
fn a_file_used_as_a_directory_and_a_symlink_loop_are_refused() {
    let s = Scratch::new("notdir");
    let file = s.path("file");
    fs::write(&file, b"x").unwrap();
    assert_rejected(
        "notdir",
        &file.join("wgroam"),
        "cannot read (Not a directory (os error 20)); expected a readable uci config file",
        &[],
    );
    let (a, b) = (s.path("a"), s.path("b"));
    std::os::unix::fs::symlink(&b, &a).unwrap();
    std::os::unix::fs::symlink(&a, &b).unwrap();
    assert_rejected(
        "loop",
        &a,
        "cannot read (Too many levels of symbolic links (os error 40)); expected a readable uci config file",
        &[],
    );
}

#[test]
fn an_unreadable_config_is_refused() {
    let s = Scratch::new("unreadable");
    let f = s.path("wgroam");
    fs::copy(corpus_dir().join("agent-role-invalid.conf"), &f).unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o000)).unwrap();
    // Root reads any file: drop the capabilities that allow it for the
    // child (setpriv, util-linux), so mode 000 means what it says.
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let wrap: &[&str] = if root {
        &[
            "setpriv",
            "--bounding-set",
            "-dac_override,-dac_read_search",
            "--",
        ]
    } else {
        &[]
    };
    assert_rejected(
        "unreadable",
        &f,
        "cannot read (Permission denied (os error 13)); expected a readable uci config file; check its permissions",
        wrap,
    );
}
