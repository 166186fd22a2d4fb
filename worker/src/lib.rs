//! placeholder
pub mod kind;
pub mod log;
