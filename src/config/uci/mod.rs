//! uci's data model and semantics, pure: sections and values as the file
//! syntax has them ([`syntax`]: the parser of `/etc/config/*` and `uci
//! export`), the changes the agent stages ([`Change`]) and what applying them
//! does ([`apply_change`], [`plan_changes`]). The store that reads and writes
//! them is the adapter in [`crate::os::uci`].

pub mod syntax;

use std::collections::BTreeMap;
use std::fmt;

pub use syntax::{ParseError, Section, Value, find_section};

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

    pub fn section(&self) -> &str {
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
        if !syntax::is_valid_package(self.package()) {
            return bad(format!(
                "package name '{}' must be letters, digits, '_' or '-'",
                self.package()
            ));
        }
        let section = self.section();
        let section_ok = match self {
            Change::AddSection { .. } => syntax::is_valid_name(section),
            _ => syntax::is_valid_name(section) || syntax::parse_type_index(section).is_some(),
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
            if !syntax::is_valid_name(o) {
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
                if !syntax::is_valid_name(stype) {
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
        let q = syntax::quote;
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
                syntax::quote(value)
            ),
            Change::SetList {
                package,
                section,
                option,
                values,
            } => {
                let v: Vec<String> = values.iter().map(|x| syntax::quote(x)).collect();
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
    let found = syntax::find_section_index(sections, change.section());
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
                    syntax::reindex(sections);
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
            syntax::reindex(sections);
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
