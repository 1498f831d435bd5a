//! uci: OpenWrt's configuration store, the adapter.
//!
//! [`UciStore`] is what the daemon uses: read a package (committed file plus staged
//! changes), stage changes, commit, list pending changes. [`UciCli`] drives the real
//! `uci` tool; [`MemoryUci`] is an in-memory fake with the same semantics for other
//! modules' tests. The data model, the file parser and the change semantics are
//! pure and live in [`crate::config::uci`].

pub mod cmd;
#[cfg(test)]
pub mod memory;

pub use crate::config::uci::syntax as parse;
pub use crate::config::uci::{
    Applied, Change, ParseError, Result, Section, UciError, Value, apply_change, find_section,
    plan_changes,
};
pub use cmd::UciCli;
#[cfg(test)]
pub use memory::MemoryUci;

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
