//! The gateway: public TCP connections carried to services published over the mesh, without
//! ever terminating their TLS (issue 17; `docs/ZNET.md` and the seeds in `shared/` describe
//! the whole design). So far only the first step exists: [`peek`] reads which name a
//! connection asks for. Accepting, publishing and carrying connections come next.
//!
//! Sans-IO, like the rest of the core: no sockets, no clock; the daemon feeds it bytes.

pub mod peek;
