//! bonsai: a model compression compiler.
//!
//! Layering: [`onnx`] and [`graph`] are the frontend and know nothing of MLIR; [`ir`] lowers a
//! graph to an MLIR module; [`pass`] runs pass pipelines over it; [`codegen`] turns it into
//! native code. Compression passes live in the `bonsai-passes` crate, which depends on this one.

pub mod error;
pub mod graph;
pub mod onnx;

pub use error::{Error, Result};
pub mod calib;
pub mod candidate;
pub mod codegen;
pub mod compress;
pub mod encoding;
pub mod ir;
pub mod npz;
pub mod pass;
pub mod report;
pub mod session;
