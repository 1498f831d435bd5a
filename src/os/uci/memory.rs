//! [`MemoryUci`]: the fake [`UciStore`] the glue's unit tests run against,
//! with the real tool's semantics (staged over committed, `uci changes`
//! lines, revert, commit). Test builds only.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::*;

/// An in-memory [`UciStore`] with the real tool's semantics, for tests. Pending
/// lines name anonymous sections `@type[n]` where the real tool shows its internal
/// `cfgXXXXXX` names.
#[derive(Debug, Default)]
pub struct MemoryUci {
    inner: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    committed: BTreeMap<String, Vec<Section>>,
    staged: BTreeMap<String, Vec<Section>>,
    pending: BTreeMap<String, Vec<String>>,
    fail_next: Option<String>,
}

impl MemoryUci {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) committed package `package` parsed from uci file text.
    pub fn with_package(self, package: &str, text: &str) -> Result<Self> {
        let sections = parse::parse_config(package, text)?;
        self.put_committed(package, sections);
        Ok(self)
    }

    /// Replaces committed package `package` (dropping its staged changes).
    pub fn put_committed(&self, package: &str, sections: Vec<Section>) {
        let mut st = self.lock();
        st.committed.insert(package.to_string(), sections);
        st.staged.remove(package);
        st.pending.remove(package);
    }

    /// The committed sections of `package` (what the config file would hold).
    pub fn committed(&self, package: &str) -> Option<Vec<Section>> {
        self.lock().committed.get(package).cloned()
    }

    /// Makes the next `stage` or `commit` fail with `message`, changing nothing.
    pub fn fail_next(&self, message: &str) {
        self.lock().fail_next = Some(message.to_string());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // A panic in another test thread must not hide this store's state.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn render_pending(change: &Change, existed: bool, sections: &[Section]) -> Vec<String> {
    // uci records the resolved section name (anonymous ones keep @type[n] here).
    let section = parse::find_section(sections, change.section())
        .map(Section::reference)
        .unwrap_or_else(|| change.section().to_string());
    let pkg = change.package();
    let q = parse::quote;
    match change {
        Change::Set { option, value, .. } => vec![format!("{pkg}.{section}.{option}={}", q(value))],
        Change::SetList { option, values, .. } => {
            let mut v = Vec::new();
            if existed {
                v.push(format!("-{pkg}.{section}.{option}"));
            }
            v.extend(
                values
                    .iter()
                    .map(|x| format!("{pkg}.{section}.{option}+={}", q(x))),
            );
            v
        }
        Change::Delete {
            option: Some(o), ..
        } => vec![format!("-{pkg}.{section}.{o}")],
        Change::Delete { option: None, .. } => vec![format!("-{pkg}.{section}")],
        Change::AddSection { stype, .. } => vec![format!("{pkg}.{section}={stype}")],
    }
}

impl UciStore for MemoryUci {
    fn load(&self, package: &str) -> Result<Vec<Section>> {
        let st = self.lock();
        st.staged
            .get(package)
            .or_else(|| st.committed.get(package))
            .cloned()
            .ok_or_else(|| UciError::new(format!("uci export {package}: package not found")))
    }

    fn stage(&self, changes: &[Change]) -> Result<()> {
        let mut st = self.lock();
        if let Some(msg) = st.fail_next.take() {
            return Err(UciError::new(msg));
        }
        let mut views = BTreeMap::new();
        for c in changes {
            let p = c.package();
            if let Some(s) = st.staged.get(p).or_else(|| st.committed.get(p)) {
                views.insert(p.to_string(), s.clone());
            }
        }
        let before = views.clone();
        let effective = plan_changes(&mut views, changes)?;
        // Render pending lines against the view each change applied to.
        let mut replay = before;
        for (c, existed) in &effective {
            let sections = replay.get_mut(c.package()).expect("planned package");
            let lines = render_pending(c, *existed, sections);
            apply_change(sections, c)?;
            st.pending
                .entry(c.package().to_string())
                .or_default()
                .extend(lines);
        }
        for (p, s) in views {
            if effective.iter().any(|(c, _)| c.package() == p) {
                st.staged.insert(p, s);
            }
        }
        Ok(())
    }

    fn commit(&self, package: &str) -> Result<()> {
        let mut st = self.lock();
        if let Some(msg) = st.fail_next.take() {
            return Err(UciError::new(msg));
        }
        if !st.committed.contains_key(package) {
            return Err(UciError::new(format!(
                "uci commit {package}: package not found"
            )));
        }
        if let Some(s) = st.staged.remove(package) {
            st.committed.insert(package.to_string(), s);
        }
        st.pending.remove(package);
        Ok(())
    }

    fn pending(&self, package: &str) -> Result<Vec<String>> {
        let st = self.lock();
        if !st.committed.contains_key(package) {
            return Err(UciError::new(format!(
                "uci changes {package}: package not found"
            )));
        }
        Ok(st.pending.get(package).cloned().unwrap_or_default())
    }

    fn revert(&self, package: &str, section: &str, option: &str) -> Result<()> {
        let mut st = self.lock();
        let Some(committed) = st.committed.get(package).cloned() else {
            return Err(UciError::new(format!(
                "uci revert {package}.{section}.{option}: package not found"
            )));
        };
        let key = format!("{package}.{section}.{option}");
        if let Some(lines) = st.pending.get_mut(package) {
            lines.retain(|l| {
                let l = l.strip_prefix('-').unwrap_or(l);
                !(l == key
                    || l.starts_with(&format!("{key}="))
                    || l.starts_with(&format!("{key}+=")))
            });
        }
        let was = parse::find_section(&committed, section).and_then(|s| s.get(option).cloned());
        if let Some(staged) = st.staged.get_mut(package)
            && let Some(sec) = staged
                .iter_mut()
                .find(|s| s.name.as_deref() == Some(section) || s.reference() == section)
        {
            match (sec.options.iter().position(|(n, _)| n == option), was) {
                (Some(i), Some(v)) => sec.options[i].1 = v,
                (Some(i), None) => {
                    sec.options.remove(i);
                }
                (None, Some(v)) => sec.options.push((option.to_string(), v)),
                (None, None) => {}
            }
        }
        Ok(())
    }
}
