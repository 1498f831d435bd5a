//! The roam's glue (R1, the travel router): the tunnel's setup and routes,
//! the prefix handed to the LAN ([`delegation`]) and the loop that runs it
//! ([`run`]).

pub mod delegation;
pub mod run;
