//! stub
pub mod model;
pub use model::*;
