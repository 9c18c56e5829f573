//! Shared test harness: a real IdP stand-in, a real redis-server, handoff itself
//! running in-process on real sockets, and an HTTP client that can pick its source
//! address (127.0.0.1 vs 127.0.0.2) to play two different devices.
#![allow(dead_code)]

pub mod fixtures;
pub mod handoff;
pub mod http;
pub mod idp;
pub mod logs;
pub mod redis;
pub mod world;
