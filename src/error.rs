//! bonsai's error type. Every error names what it is about: file, node, op, input or option.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {msg}", path.display())]
    Io { path: PathBuf, msg: String },

    #[error("{}: not a valid ONNX model: {msg}", path.display())]
    Decode { path: PathBuf, msg: String },

    #[error(
        "{file}: node '{node}' ({op}): operator {op} at opset {opset} is not supported{detail}"
    )]
    Unsupported {
        file: String,
        node: String,
        op: String,
        opset: i64,
        detail: String,
    },

    #[error("{file}: node '{node}' ({op}): {msg}")]
    Node {
        file: String,
        node: String,
        op: String,
        msg: String,
    },

    /// A node needs one of its inputs to be known at compile time (a shape, axes, pads).
    #[error("{file}: node '{node}' ({op}): input '{input}' must be a constant (an initializer, a Constant or foldable from shapes)")]
    NotConstant {
        file: String,
        node: String,
        op: String,
        input: String,
    },

    #[error("{file}: {msg}")]
    Model { file: String, msg: String },

    #[error("input '{name}': {msg}")]
    Input { name: String, msg: String },

    #[error("option {option}: {msg}")]
    Option { option: String, msg: String },

    #[error("pass {pass}: {msg}")]
    Pass { pass: String, msg: String },

    #[error("MLIR: {0}")]
    Mlir(String),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, e: impl std::fmt::Display) -> Error {
        Error::Io {
            path: path.into(),
            msg: e.to_string(),
        }
    }

    pub fn option(option: impl Into<String>, msg: impl Into<String>) -> Error {
        Error::Option {
            option: option.into(),
            msg: msg.into(),
        }
    }

    pub fn input(name: impl Into<String>, msg: impl Into<String>) -> Error {
        Error::Input {
            name: name.into(),
            msg: msg.into(),
        }
    }
}
