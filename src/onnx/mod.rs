//! ONNX frontend: decode a model file into a [`Graph`]. No MLIR here.

pub mod export;
pub mod tensor;

use std::collections::HashMap;
use std::path::Path;

use onnx_protobuf::{attribute_proto::AttributeType, Message, ModelProto, NodeProto};

use crate::error::{Error, Result};
use crate::graph::{ops, Attr, Attrs, DType, Dim, Graph, GraphInput, Node, ValueId};

/// Read and decode an ONNX model file.
pub fn load(path: &Path) -> Result<Graph> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let dir = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."));
    decode(&bytes, path, dir)
}

/// Decode model bytes; `path` names the model in errors and `dir` anchors external data.
pub fn decode(bytes: &[u8], path: &Path, dir: &Path) -> Result<Graph> {
    let model = ModelProto::parse_from_bytes(bytes).map_err(|e| Error::Decode {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    let file = path.display().to_string();
    let merr = |msg: String| Error::Model {
        file: file.clone(),
        msg,
    };
    let g = model.graph.as_ref().ok_or_else(|| Error::Decode {
        path: path.to_path_buf(),
        msg: "the file has no graph (truncated, or not an ONNX model)".into(),
    })?;
    if g.node.is_empty() && g.output.is_empty() {
        return Err(Error::Decode {
            path: path.to_path_buf(),
            msg: "the graph is empty (truncated, or not an ONNX model)".into(),
        });
    }
    let mut opset = None;
    for o in &model.opset_import {
        if o.domain.is_empty() || o.domain == "ai.onnx" {
            opset = Some(o.version);
        }
    }
    // Without a default-domain import, every ai.onnx node is rejected below by the op table.
    let opset = opset.unwrap_or(0);

    let origin = tensor::Origin { file: path, dir };
    let mut graph = Graph::new(file.clone(), g.name.clone(), opset);
    let mut by_name: HashMap<String, ValueId> = HashMap::new();

    for init in &g.initializer {
        let t = tensor::decode(init, &origin)?;
        let id = graph.add_const(init.name.clone(), t);
        by_name.insert(init.name.clone(), id);
    }
    if !g.sparse_initializer.is_empty() {
        return Err(merr(
            "sparse_initializer is not supported yet; store the weights densely".into(),
        ));
    }
    for vi in &g.input {
        if by_name.contains_key(&vi.name) {
            continue; // an initializer that is also listed as an input: treat as constant
        }
        let tt = match &vi.type_.value {
            Some(onnx_protobuf::type_proto::Value::TensorType(t)) => t,
            _ => {
                return Err(merr(format!(
                    "input '{}' is a sequence, map or optional, which is not supported",
                    vi.name
                )))
            }
        };
        let dtype = DType::from_onnx(tt.elem_type).ok_or_else(|| {
            merr(format!(
                "input '{}' has element type {}, which is not supported",
                vi.name,
                DType::onnx_name(tt.elem_type)
            ))
        })?;
        let shape = tt
            .shape
            .as_ref()
            .ok_or_else(|| merr(format!("input '{}' has no shape (rank unknown)", vi.name)))?;
        let mut dims = Vec::new();
        for d in &shape.dim {
            use onnx_protobuf::tensor_shape_proto::dimension::Value as DV;
            dims.push(match &d.value {
                Some(DV::DimValue(n)) if *n >= 0 => Dim::Fixed(*n as usize),
                Some(DV::DimParam(s)) => Dim::Sym(s.clone()),
                _ => Dim::Sym(String::new()),
            });
        }
        let id = graph.add_value(vi.name.clone());
        by_name.insert(vi.name.clone(), id);
        graph.inputs.push(GraphInput {
            value: id,
            dtype,
            dims,
        });
    }

    for (i, n) in g.node.iter().enumerate() {
        let node_name = if n.name.is_empty() {
            format!("{}_{i}", n.op_type)
        } else {
            n.name.clone()
        };
        let unsupported = |detail: String| Error::Unsupported {
            file: file.clone(),
            node: node_name.clone(),
            op: n.op_type.clone(),
            opset,
            detail,
        };
        if !(n.domain.is_empty() || n.domain == "ai.onnx") {
            return Err(unsupported(format!(" (domain '{}')", n.domain)));
        }
        let attrs = decode_attrs(n, &origin)?;
        if n.op_type == "Constant" {
            let t = constant_value(&attrs).map_err(|m| Error::Node {
                file: file.clone(),
                node: node_name.clone(),
                op: "Constant".into(),
                msg: m,
            })?;
            let out = n
                .output
                .first()
                .ok_or_else(|| merr(format!("Constant node '{node_name}' has no output")))?;
            let id = graph.add_const(out.clone(), t);
            by_name.insert(out.clone(), id);
            continue;
        }
        if ops::lookup(&n.op_type, opset).is_none() {
            return Err(unsupported(String::new()));
        }
        let mut inputs = Vec::new();
        for name in &n.input {
            if name.is_empty() {
                inputs.push(None);
                continue;
            }
            let id = *by_name.get(name).ok_or_else(|| Error::Node {
                file: file.clone(),
                node: node_name.clone(),
                op: n.op_type.clone(),
                msg: format!(
                    "input '{name}' is not produced by any earlier node, initializer or graph input"
                ),
            })?;
            inputs.push(Some(id));
        }
        let mut outputs = Vec::new();
        for name in &n.output {
            // Unused optional outputs still get a value so indices line up.
            let id = graph.add_value(name.clone());
            if !name.is_empty() {
                by_name.insert(name.clone(), id);
            }
            outputs.push(id);
        }
        graph.add_node(Node {
            name: node_name,
            op: n.op_type.clone(),
            inputs,
            outputs,
            attrs,
        });
    }
    for vo in &g.output {
        let id = *by_name
            .get(&vo.name)
            .ok_or_else(|| merr(format!("graph output '{}' is never produced", vo.name)))?;
        graph.outputs.push(id);
    }
    graph.topo_order()?;
    Ok(graph)
}

fn decode_attrs(n: &NodeProto, origin: &tensor::Origin) -> Result<Attrs> {
    let mut attrs = Attrs::default();
    for a in &n.attribute {
        let v = match a.type_.enum_value() {
            Ok(AttributeType::INT) => Attr::Int(a.i),
            Ok(AttributeType::FLOAT) => Attr::Float(a.f),
            Ok(AttributeType::INTS) => Attr::Ints(a.ints.clone()),
            Ok(AttributeType::FLOATS) => Attr::Floats(a.floats.clone()),
            Ok(AttributeType::STRING) => Attr::Str(String::from_utf8_lossy(&a.s).into_owned()),
            Ok(AttributeType::STRINGS) => Attr::Strings(
                a.strings
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            ),
            Ok(AttributeType::TENSOR) => match a.t.as_ref() {
                Some(t) => Attr::Tensor(tensor::decode(t, origin)?),
                None => Attr::Unsupported("empty tensor attribute"),
            },
            Ok(AttributeType::GRAPH) | Ok(AttributeType::GRAPHS) => Attr::Unsupported("subgraph"),
            _ => Attr::Unsupported("attribute kind"),
        };
        attrs.set(&a.name, v);
    }
    Ok(attrs)
}

fn constant_value(attrs: &Attrs) -> std::result::Result<crate::graph::Tensor, String> {
    use crate::graph::Tensor;
    if let Some(t) = attrs.tensor("value") {
        return Ok(t.clone());
    }
    if let Some(f) = attrs.float("value_float") {
        return Ok(Tensor::f32(vec![], vec![f]));
    }
    if let Some(v) = attrs.floats("value_floats") {
        return Ok(Tensor::f32(vec![v.len()], v.to_vec()));
    }
    if let Some(i) = attrs.int("value_int") {
        return Ok(Tensor::i64(vec![], vec![i]));
    }
    if let Some(v) = attrs.ints("value_ints") {
        return Ok(Tensor::i64(vec![v.len()], v.to_vec()));
    }
    Err("Constant without a supported value attribute (value, value_float(s), value_int(s))".into())
}
