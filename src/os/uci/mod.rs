//! uci: OpenWrt's configuration store.
//!
//! [`UciStore`] is what the daemon uses: read a package (committed file plus staged
//! changes), stage changes, commit, list pending changes. [`UciCli`] drives the real
//! `uci` tool; [`MemoryUci`] is an in-memory fake with the same semantics for other
//! modules' tests. [`parse`] holds the file and `uci show` parsers.

pub mod cmd;
#[cfg(test)]
pub mod memory;
pub mod parse;

use std::collections::BTreeMap;
use std::fmt;

pub use cmd::UciCli;
#[cfg(test)]
pub use memory::MemoryUci;
pub use parse::{ParseError, Section, Value, find_section};

/// A one-line error from the uci layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UciError(String);

impl UciError {
    /// An error with this message (newlines are folded into `; `).
    pub fn new(msg: impl Into<String>) -> Self {
        let msg: String = msg.into();
        let folded: Vec<&str> = msg
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        UciError(folded.join("; "))
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UciError {}

impl From<ParseError> for UciError {
    fn from(e: ParseError) -> Self {
        UciError::new(e.to_string())
    }
}

/// Result of the uci layer.
pub type Result<T> = std::result::Result<T, UciError>;

/// One change to stage. `section` is a section name or `@type[n]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Set a plain option (`uci set`). The section must exist.
    Set {
        package: String,
        section: String,
        option: String,
        value: String,
    },
    /// Replace an option by a list with exactly these values (`uci delete` then
    /// `uci add_list` for each); an empty list deletes the option.
    SetList {
        package: String,
        section: String,
        option: String,
        values: Vec<String>,
    },
    /// Delete an option, or the whole section when `option` is `None`. Deleting
    /// something absent changes nothing.
    Delete {
        package: String,
        section: String,
        option: Option<String>,
    },
    /// Make sure a named section of this type exists (`uci set pkg.name=type`).
    AddSection {
        package: String,
        section: String,
        stype: String,
    },
}

impl Change {
    /// `Change::Set`.
    pub fn set(package: &str, section: &str, option: &str, value: &str) -> Self {
        Change::Set {
            package: package.into(),
            section: section.into(),
            option: option.into(),
            value: value.into(),
        }
    }

    /// `Change::SetList`.
    pub fn set_list<S: AsRef<str>>(
        package: &str,
        section: &str,
        option: &str,
        values: &[S],
    ) -> Self {
        Change::SetList {
            package: package.into(),
            section: section.into(),
            option: option.into(),
            values: values.iter().map(|v| v.as_ref().to_string()).collect(),
        }
    }

    /// `Change::Delete` of an option.
    pub fn delete_option(package: &str, section: &str, option: &str) -> Self {
        Change::Delete {
            package: package.into(),
            section: section.into(),
            option: Some(option.into()),
        }
    }

    /// `Change::Delete` of a whole section.
    pub fn delete_section(package: &str, section: &str) -> Self {
        Change::Delete {
            package: package.into(),
            section: section.into(),
            option: None,
        }
    }

    /// `Change::AddSection`.
    pub fn add_section(package: &str, section: &str, stype: &str) -> Self {
        Change::AddSection {
            package: package.into(),
            section: section.into(),
            stype: stype.into(),
        }
    }

    /// The package this change touches.
    pub fn package(&self) -> &str {
        match self {
            Change::Set { package, .. }
            | Change::SetList { package, .. }
            | Change::Delete { package, .. }
            | Change::AddSection { package, .. } => package,
        }
    }

    fn section(&self) -> &str {
        match self {
            Change::Set { section, .. }
            | Change::SetList { section, .. }
            | Change::Delete { section, .. }
            | Change::AddSection { section, .. } => section,
        }
    }

    /// Checks names and values before anything is run.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| {
            Err(UciError::new(format!(
                "invalid uci change ({self}): {what}"
            )))
        };
        if !parse::is_valid_package(self.package()) {
            return bad(format!(
                "package name '{}' must be letters, digits, '_' or '-'",
                self.package()
            ));
        }
        let section = self.section();
        let section_ok = match self {
            Change::AddSection { .. } => parse::is_valid_name(section),
            _ => parse::is_valid_name(section) || parse::parse_type_index(section).is_some(),
        };
        if !section_ok {
            return bad(format!(
                "section '{section}' must be a name of letters, digits and '_'{}",
                if matches!(self, Change::AddSection { .. }) {
                    ""
                } else {
                    " or @type[n]"
                }
            ));
        }
        let option = match self {
            Change::Set { option, .. } | Change::SetList { option, .. } => Some(option.as_str()),
            Change::Delete { option, .. } => option.as_deref(),
            Change::AddSection { .. } => None,
        };
        if let Some(o) = option {
            if !parse::is_valid_name(o) {
                return bad(format!("option '{o}' must be letters, digits and '_'"));
            }
        }
        let check_value = |v: &str| -> Result<()> {
            if v.is_empty() {
                return bad("empty value (uci would delete the option; use Change::Delete)".into());
            }
            if let Some(c) = v
                .chars()
                .find(|&c| (c as u32) < 32 && !matches!(c, '\t' | '\n' | '\r'))
            {
                return bad(format!("value contains control character {:?}", c));
            }
            Ok(())
        };
        match self {
            Change::Set { value, .. } => check_value(value)?,
            Change::SetList { values, .. } => values.iter().try_for_each(|v| check_value(v))?,
            Change::AddSection { stype, .. } => {
                if !parse::is_valid_name(stype) {
                    return bad(format!(
                        "section type '{stype}' must be letters, digits and '_'"
                    ));
                }
            }
            Change::Delete { .. } => {}
        }
        Ok(())
    }

    /// The `uci batch` commands that make this change.
    pub(crate) fn batch_lines(&self, existed: bool) -> Vec<String> {
        let q = parse::quote;
        match self {
            Change::Set {
                package,
                section,
                option,
                value,
            } => vec![format!(
                "set {}",
                q(&format!("{package}.{section}.{option}={value}"))
            )],
            Change::SetList {
                package,
                section,
                option,
                values,
            } => {
                let key = format!("{package}.{section}.{option}");
                let mut v = Vec::new();
                if existed {
                    v.push(format!("delete {}", q(&key)));
                }
                v.extend(
                    values
                        .iter()
                        .map(|x| format!("add_list {}", q(&format!("{key}={x}")))),
                );
                v
            }
            Change::Delete {
                package,
                section,
                option,
            } => {
                let key = match option {
                    Some(o) => format!("{package}.{section}.{o}"),
                    None => format!("{package}.{section}"),
                };
                vec![format!("delete {}", q(&key))]
            }
            Change::AddSection {
                package,
                section,
                stype,
            } => vec![format!(
                "set {}",
                q(&format!("{package}.{section}={stype}"))
            )],
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Set {
                package,
                section,
                option,
                value,
            } => write!(
                f,
                "set {package}.{section}.{option}={}",
                parse::quote(value)
            ),
            Change::SetList {
                package,
                section,
                option,
                values,
            } => {
                let v: Vec<String> = values.iter().map(|x| parse::quote(x)).collect();
                write!(f, "set list {package}.{section}.{option}=[{}]", v.join(" "))
            }
            Change::Delete {
                package,
                section,
                option: Some(o),
            } => write!(f, "delete {package}.{section}.{o}"),
            Change::Delete {
                package,
                section,
                option: None,
            } => write!(f, "delete {package}.{section}"),
            Change::AddSection {
                package,
                section,
                stype,
            } => write!(f, "add section {package}.{section}={stype}"),
        }
    }
}

/// What applying a change did to a package's sections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Nothing to do: the package already looks like that.
    Unchanged,
    /// Changed; `existed` tells whether the option/section was there before.
    Changed { existed: bool },
}

/// Applies `change` to `sections` with uci's semantics (a set option moves to the
/// end of its section, as `uci set` does). Fails when the section is missing
/// (except for deletes, which are then no-ops).
pub fn apply_change(sections: &mut Vec<Section>, change: &Change) -> Result<Applied> {
    let missing = || {
        UciError::new(format!(
            "uci: section '{}' does not exist in package '{}' ({change})",
            change.section(),
            change.package()
        ))
    };
    let found = parse::find_section_index(sections, change.section());
    let out = match change {
        Change::Set { option, value, .. } => {
            let s = &mut sections[found.ok_or_else(missing)?];
            let pos = s.options.iter().position(|(n, _)| n == option);
            if let Some(i) = pos {
                if s.options[i].1 == Value::Single(value.clone()) {
                    return Ok(Applied::Unchanged);
                }
                s.options.remove(i);
            }
            s.options
                .push((option.clone(), Value::Single(value.clone())));
            Applied::Changed {
                existed: pos.is_some(),
            }
        }
        Change::SetList { option, values, .. } => {
            let s = &mut sections[found.ok_or_else(missing)?];
            let pos = s.options.iter().position(|(n, _)| n == option);
            if values.is_empty() {
                match pos {
                    None => return Ok(Applied::Unchanged),
                    Some(i) => {
                        s.options.remove(i);
                    }
                }
            } else {
                if let Some(i) = pos {
                    if s.options[i].1 == Value::List(values.clone()) {
                        return Ok(Applied::Unchanged);
                    }
                    s.options.remove(i);
                }
                s.options
                    .push((option.clone(), Value::List(values.clone())));
            }
            Applied::Changed {
                existed: pos.is_some(),
            }
        }
        Change::Delete { option, .. } => {
            let Some(si) = found else {
                return Ok(Applied::Unchanged);
            };
            match option {
                None => {
                    sections.remove(si);
                    parse::reindex(sections);
                }
                Some(o) => {
                    let s = &mut sections[si];
                    let Some(i) = s.options.iter().position(|(n, _)| n == o) else {
                        return Ok(Applied::Unchanged);
                    };
                    s.options.remove(i);
                }
            }
            Applied::Changed { existed: true }
        }
        Change::AddSection { section, stype, .. } => {
            match found {
                Some(i) if sections[i].stype == *stype => return Ok(Applied::Unchanged),
                Some(i) => sections[i].stype = stype.clone(),
                None => sections.push(Section::new(stype, Some(section))),
            }
            parse::reindex(sections);
            Applied::Changed {
                existed: found.is_some(),
            }
        }
    };
    Ok(out)
}

/// Applies `changes` in order to the packages in `views` (which must hold every
/// package the changes touch) and returns the changes that did something, with
/// whether their target existed. Nothing in `views` is left half-changed on error.
pub fn plan_changes(
    views: &mut BTreeMap<String, Vec<Section>>,
    changes: &[Change],
) -> Result<Vec<(Change, bool)>> {
    let mut work = views.clone();
    let mut effective = Vec::new();
    for c in changes {
        c.validate()?;
        let sections = work.get_mut(c.package()).ok_or_else(|| {
            UciError::new(format!("uci: package '{}' not found ({c})", c.package()))
        })?;
        if let Applied::Changed { existed } = apply_change(sections, c)? {
            effective.push((c.clone(), existed));
        }
    }
    *views = work;
    Ok(effective)
}

/// The configuration store the daemon uses.
pub trait UciStore {
    /// The sections of `package`: committed file plus staged changes.
    fn load(&self, package: &str) -> Result<Vec<Section>>;
    /// Stages `changes` (into uci's save directory, not the config files) as one
    /// all-or-nothing step. Changes that are already in effect are skipped, so
    /// staging the same values again adds nothing.
    fn stage(&self, changes: &[Change]) -> Result<()>;
    /// Writes `package`'s staged changes into its config file.
    fn commit(&self, package: &str) -> Result<()>;
    /// `package`'s staged changes, one `uci changes` line each.
    fn pending(&self, package: &str) -> Result<Vec<String>>;
    /// Drops every staged change of one option (`uci revert
    /// package.section.option`); the committed value is untouched.
    fn revert(&self, package: &str, section: &str, option: &str) -> Result<()>;
}

macro_rules! forward_store {
    ($($ty:ty),*) => {$(
        impl<T: UciStore + ?Sized> UciStore for $ty {
            fn load(&self, package: &str) -> Result<Vec<Section>> {
                (**self).load(package)
            }
            fn stage(&self, changes: &[Change]) -> Result<()> {
                (**self).stage(changes)
            }
            fn commit(&self, package: &str) -> Result<()> {
                (**self).commit(package)
            }
            fn pending(&self, package: &str) -> Result<Vec<String>> {
                (**self).pending(package)
            }
            fn revert(&self, package: &str, section: &str, option: &str) -> Result<()> {
                (**self).revert(package, section, option)
            }
        }
    )*};
}

// So a test can hand the daemon `Arc<MemoryUci>` (or `&MemoryUci`) and keep
// inspecting the same store.
forward_store!(&T, Box<T>, std::sync::Arc<T>);

#[cfg(test)]
mod tests {
    use super::*;

    const NET: &str = "config interface 'wg0'\n\toption proto 'wireguard'\n\nconfig wireguard_wg0 'hub'\n\toption endpoint_host '198.51.100.10'\n\tlist allowed_ips '2001:db8:100::/64'\n\nconfig wireguard_wg0\n\toption public_key 'k2'\n";

    fn store() -> MemoryUci {
        MemoryUci::new().with_package("network", NET).unwrap()
    }

    #[test]
    fn fake_stages_loads_and_commits() {
        let u = store();
        u.stage(&[
            Change::set("network", "hub", "endpoint_host", "203.0.113.7"),
            Change::set("network", "hub", "endpoint_port", "51820"),
        ])
        .unwrap();
        let view = u.load("network").unwrap();
        assert_eq!(
            find_section(&view, "hub")
                .unwrap()
                .get_single("endpoint_host"),
            Some("203.0.113.7")
        );
        let committed = u.committed("network").unwrap();
        assert_eq!(
            find_section(&committed, "hub")
                .unwrap()
                .get_single("endpoint_host"),
            Some("198.51.100.10")
        );
        assert_eq!(
            u.pending("network").unwrap(),
            [
                "network.hub.endpoint_host='203.0.113.7'",
                "network.hub.endpoint_port='51820'"
            ]
        );
        u.commit("network").unwrap();
        assert!(u.pending("network").unwrap().is_empty());
        let committed = u.committed("network").unwrap();
        assert_eq!(
            find_section(&committed, "hub")
                .unwrap()
                .get_single("endpoint_port"),
            Some("51820")
        );
    }

    #[test]
    fn staging_twice_adds_nothing() {
        let u = store();
        let changes = [
            Change::set(
                "network",
                "@wireguard_wg0[1]",
                "endpoint_host",
                "it's a \"test\"",
            ),
            Change::set_list(
                "network",
                "hub",
                "allowed_ips",
                &["2001:db8:100::/64", "2001:db8:100:1::/64"],
            ),
        ];
        u.stage(&changes).unwrap();
        let first = u.pending("network").unwrap();
        assert_eq!(
            first,
            [
                "network.@wireguard_wg0[1].endpoint_host='it'\\''s a \"test\"'",
                "-network.hub.allowed_ips",
                "network.hub.allowed_ips+='2001:db8:100::/64'",
                "network.hub.allowed_ips+='2001:db8:100:1::/64'",
            ]
        );
        u.stage(&changes).unwrap();
        assert_eq!(u.pending("network").unwrap(), first);
    }

    #[test]
    fn failing_stage_changes_nothing() {
        let u = store();
        let e = u
            .stage(&[
                Change::set("network", "hub", "endpoint_port", "1"),
                Change::set("network", "nosuch", "endpoint_host", "x"),
            ])
            .unwrap_err();
        assert!(
            e.message()
                .contains("section 'nosuch' does not exist in package 'network'"),
            "{e}"
        );
        assert!(u.pending("network").unwrap().is_empty());
        assert_eq!(
            find_section(&u.load("network").unwrap(), "hub")
                .unwrap()
                .get("endpoint_port"),
            None
        );
        u.fail_next("boom");
        assert_eq!(
            u.stage(&[Change::set("network", "hub", "x", "1")])
                .unwrap_err()
                .message(),
            "boom"
        );
        assert!(u.pending("network").unwrap().is_empty());
    }

    #[test]
    fn apply_change_semantics() {
        let mut s = parse::parse_config("n", NET).unwrap();
        // Set moves the option to the end, like uci set.
        let ch = Change::set("network", "wg0", "proto", "none");
        assert_eq!(
            apply_change(&mut s, &ch).unwrap(),
            Applied::Changed { existed: true }
        );
        assert_eq!(apply_change(&mut s, &ch).unwrap(), Applied::Unchanged);
        let del = Change::delete_option("network", "hub", "nope");
        assert_eq!(apply_change(&mut s, &del).unwrap(), Applied::Unchanged);
        let del = Change::delete_section("network", "@wireguard_wg0[0]");
        assert_eq!(
            apply_change(&mut s, &del).unwrap(),
            Applied::Changed { existed: true }
        );
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].index, 0, "indices recomputed after a delete");
        let add = Change::add_section("network", "peer2", "wireguard_wg0");
        assert_eq!(
            apply_change(&mut s, &add).unwrap(),
            Applied::Changed { existed: false }
        );
        assert_eq!(
            find_section(&s, "@wireguard_wg0[1]")
                .unwrap()
                .name
                .as_deref(),
            Some("peer2")
        );
        assert_eq!(apply_change(&mut s, &add).unwrap(), Applied::Unchanged);
        let empty = Change::set_list::<&str>("network", "peer2", "allowed_ips", &[]);
        assert_eq!(apply_change(&mut s, &empty).unwrap(), Applied::Unchanged);
    }

    #[test]
    fn validation_rejects_bad_names_and_values() {
        let cases = [
            (Change::set("net.work", "hub", "x", "1"), "package name"),
            (Change::set("network", "wg-r1", "x", "1"), "section 'wg-r1'"),
            (Change::set("network", "hub", "x.y", "1"), "option 'x.y'"),
            (Change::set("network", "hub", "x", ""), "empty value"),
            (
                Change::set("network", "hub", "x", "a\u{1}b"),
                "control character",
            ),
            (
                Change::add_section("network", "@x[0]", "t"),
                "section '@x[0]'",
            ),
        ];
        for (c, what) in cases {
            let e = c.validate().unwrap_err();
            assert!(e.message().contains(what), "{c}: {e}");
            assert!(!e.message().contains('\n'));
        }
        Change::set("network", "@wireguard_wg0[-1]", "x", "multi\nline\tok")
            .validate()
            .unwrap();
    }

    #[test]
    fn batch_lines_quote_everything() {
        let c = Change::set("network", "hub", "description", "it's; #not a comment");
        assert_eq!(
            c.batch_lines(true),
            ["set 'network.hub.description=it'\\''s; #not a comment'"]
        );
        let c = Change::set_list("network", "hub", "allowed_ips", &["a", "b"]);
        assert_eq!(
            c.batch_lines(true),
            [
                "delete 'network.hub.allowed_ips'",
                "add_list 'network.hub.allowed_ips=a'",
                "add_list 'network.hub.allowed_ips=b'"
            ]
        );
        assert_eq!(c.batch_lines(false).len(), 2);
    }

    #[test]
    fn shared_fake_is_seen_through_arc_and_box() {
        let u = std::sync::Arc::new(store());
        let daemon: Box<dyn UciStore> = Box::new(u.clone());
        daemon
            .stage(&[Change::set("network", "hub", "endpoint_port", "1")])
            .unwrap();
        assert_eq!(
            u.pending("network").unwrap(),
            ["network.hub.endpoint_port='1'"]
        );
        daemon.commit("network").unwrap();
        let c = u.committed("network").unwrap();
        assert_eq!(
            find_section(&c, "hub").unwrap().get_single("endpoint_port"),
            Some("1")
        );
    }

    #[test]
    fn error_is_one_line() {
        assert_eq!(UciError::new("a\n  b\n\nc").message(), "a; b; c");
    }
}
