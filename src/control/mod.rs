//! The daemon's control interface: JSON lines over a Unix socket (docs/protocol.md). This
//! module holds the wire format; the server (socket, credentials, one thread per client) is in server.rs.

pub mod protocol;
pub mod server;
