//! The daemon's control interface: JSON lines over a Unix socket (docs/protocol.md). This
//! module holds the wire format; the server comes with the daemon.

pub mod protocol;
