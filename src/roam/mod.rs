//! The roam's glue (R1, the travel router): the tunnel's setup and routes,
//! the prefix handed to the LAN ([`delegation`]), `status.json` ([`status`]) and the role the loop runs
//! ([`runtime`], driven by [`crate::driver`]).

pub mod delegation;
pub mod runtime;
pub mod status;
