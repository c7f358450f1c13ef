//! Node attributes, decoded from ONNX and rewritten into canonical form by inference.

use std::collections::BTreeMap;

use super::tensor::Tensor;

#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Str(String),
    Strings(Vec<String>),
    Tensor(Tensor),
    /// Subgraphs and type protos: bonsai does not compile them (If/Loop/Scan are unsupported).
    Unsupported(&'static str),
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attrs(pub BTreeMap<String, Attr>);

impl Attrs {
    pub fn get(&self, k: &str) -> Option<&Attr> {
        self.0.get(k)
    }

    pub fn set(&mut self, k: &str, a: Attr) {
        self.0.insert(k.to_string(), a);
    }

    pub fn has(&self, k: &str) -> bool {
        self.0.contains_key(k)
    }

    pub fn int(&self, k: &str) -> Option<i64> {
        match self.0.get(k) {
            Some(Attr::Int(i)) => Some(*i),
            _ => None,
        }
    }

    pub fn int_or(&self, k: &str, d: i64) -> i64 {
        self.int(k).unwrap_or(d)
    }

    pub fn float(&self, k: &str) -> Option<f32> {
        match self.0.get(k) {
            Some(Attr::Float(f)) => Some(*f),
            Some(Attr::Int(i)) => Some(*i as f32),
            _ => None,
        }
    }

    pub fn float_or(&self, k: &str, d: f32) -> f32 {
        self.float(k).unwrap_or(d)
    }

    pub fn ints(&self, k: &str) -> Option<&[i64]> {
        match self.0.get(k) {
            Some(Attr::Ints(v)) => Some(v),
            _ => None,
        }
    }

    pub fn floats(&self, k: &str) -> Option<&[f32]> {
        match self.0.get(k) {
            Some(Attr::Floats(v)) => Some(v),
            _ => None,
        }
    }

    pub fn str(&self, k: &str) -> Option<&str> {
        match self.0.get(k) {
            Some(Attr::Str(s)) => Some(s),
            _ => None,
        }
    }

    pub fn tensor(&self, k: &str) -> Option<&Tensor> {
        match self.0.get(k) {
            Some(Attr::Tensor(t)) => Some(t),
            _ => None,
        }
    }
}
