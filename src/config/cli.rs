//! Flags → `Config` (written next).
