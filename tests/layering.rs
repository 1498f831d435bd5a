//! The folders are the design, checked: the pure folders (`src/core`,
//! `src/wire`, `src/config`) never name the operating system's adapters, the
//! roles' glue, the loop or the commands. clippy.toml keeps clock, file,
//! socket, thread and process calls out of them; this keeps the imports out.
//! Test code (files named `tests.rs`, and everything after a file's first
//! `#[cfg(test)]`) may use fakes from anywhere.

use std::fs;
use std::path::{Path, PathBuf};

const PURE: &[&str] = &["src/core", "src/wire", "src/config"];
const IMPURE: &[&str] = &[
    "crate::os",
    "crate::hub",
    "crate::roam",
    "crate::driver",
    "crate::app",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `(file:line, text)` of every shipped line in the pure folders that names
/// an impure module.
fn violations(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for d in PURE {
        rust_files(&root.join(d), &mut files);
    }
    assert!(files.len() > 10, "found only {files:?}");
    let mut found = Vec::new();
    for f in files {
        if f.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = fs::read_to_string(&f).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("#[cfg(test)]") {
                break;
            }
            let code = line.split("//").next().unwrap_or("");
            if IMPURE.iter().any(|m| {
                code.match_indices(m).any(|(i, _)| {
                    // `crate::os` but not `crate::osx`.
                    !code[i + m.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
                })
            }) {
                found.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn the_pure_folders_import_nothing_from_the_impure_ones() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let v = violations(root);
    assert!(
        v.is_empty(),
        "pure code names an adapter or glue module (move the type into core/wire/config, \
         or the code out):\n{}",
        v.join("\n")
    );
}

#[test]
fn the_check_sees_a_violation() {
    // The scanner itself: a pure file that imports an adapter is caught, a
    // test module after `#[cfg(test)]` is not.
    let dir = std::env::temp_dir().join(format!("wgroam-layering-{}", std::process::id()));
    for d in PURE {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    for i in 0..11 {
        fs::write(
            dir.join(format!("src/core/ok{i}.rs")),
            "use crate::core::net::IpNet;\n",
        )
        .unwrap();
    }
    fs::write(
        dir.join("src/core/bad.rs"),
        "use crate::os::wg::WireGuard;\n#[cfg(test)]\nmod tests { use crate::hub::state; }\n",
    )
    .unwrap();
    let v = violations(&dir);
    fs::remove_dir_all(&dir).unwrap();
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(
        v[0].ends_with("bad.rs:1: use crate::os::wg::WireGuard;"),
        "{v:?}"
    );
}
