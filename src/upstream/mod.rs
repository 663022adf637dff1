//! The upstream client behind one narrow interface: send a request to an
//! origin, get a response and its `Timing`.

mod timing;

pub use timing::{Protocol, Timing};
