//! Writing models back: the original ONNX with some weights replaced (compressed values).

use std::collections::HashMap;
use std::path::Path;

use onnx_protobuf::{attribute_proto::AttributeType, Message, ModelProto};

use super::tensor::encode;
use crate::error::{Error, Result};
use crate::graph::Tensor;

/// Re-encode `src` with the named tensors replaced, wherever they live (initializers or
/// `Constant` nodes). Every name must be found.
pub fn replace_weights(src: &Path, new: &HashMap<String, Tensor>) -> Result<Vec<u8>> {
    let bytes = std::fs::read(src).map_err(|e| Error::io(src, e))?;
    let mut m = ModelProto::parse_from_bytes(&bytes).map_err(|e| Error::Decode {
        path: src.into(),
        msg: e.to_string(),
    })?;
    let g = m.graph.as_mut().ok_or_else(|| Error::Decode {
        path: src.into(),
        msg: "no graph".into(),
    })?;
    let mut done = 0usize;
    for init in g.initializer.iter_mut() {
        if let Some(t) = new.get(&init.name) {
            *init = encode(&init.name, t);
            done += 1;
        }
    }
    for n in g.node.iter_mut().filter(|n| n.op_type == "Constant") {
        let Some(out) = n.output.first() else {
            continue;
        };
        if let Some(t) = new.get(out) {
            for a in n.attribute.iter_mut().filter(|a| a.name == "value") {
                a.t = protobuf::MessageField::some(encode(out, t));
                a.type_ = protobuf::EnumOrUnknown::new(AttributeType::TENSOR);
                done += 1;
            }
        }
    }
    if done != new.len() {
        return Err(Error::Model {
            file: src.display().to_string(),
            msg: format!(
                "{} of {} compressed weights were not found in the model",
                new.len() - done,
                new.len()
            ),
        });
    }
    m.write_to_bytes().map_err(|e| Error::Model {
        file: src.display().to_string(),
        msg: e.to_string(),
    })
}

/// Write `bytes` to `out` through a temporary file renamed into place (no partial output).
pub fn write_atomic(out: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = out.with_extension("tmp~");
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, out).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(out, e)
    })
}
