//! Reads the parts of an ONNX model the fetcher needs (graph nodes and float initializers) straight from
//! the protobuf wire format, so users need neither Python nor protoc. Only the fields listed in
//! onnx.proto that matter for constant weights are decoded; everything else is skipped by wire type.

use std::collections::HashMap;

/// Why an ONNX file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("malformed protobuf at byte {offset}: {what}")]
    Malformed { offset: usize, what: &'static str },
    #[error("the model has no graph")]
    NoGraph,
    #[error("initializer {name:?} has data type {data_type}, only float32 (1) and int64 (7) are supported")]
    UnsupportedType { name: String, data_type: i32 },
    #[error("initializer {name:?} stores its data outside the file, which is not supported")]
    ExternalData { name: String },
    #[error("initializer {name:?} has {got} bytes of data, its shape {dims:?} needs {want}")]
    SizeMismatch { name: String, dims: Vec<i64>, got: usize, want: usize },
}

/// ONNX TensorProto.DataType values used here.
pub const DATA_TYPE_FLOAT: i32 = 1;
pub const DATA_TYPE_INT64: i32 = 7;

/// A constant tensor: an initializer, or the value of a Constant node.
#[derive(Debug, Clone, Default)]
pub struct Tensor {
    pub name: String,
    pub dims: Vec<i64>,
    pub data_type: i32,
    float_data: Vec<f32>,
    int64_data: Vec<i64>,
    raw_data: Vec<u8>,
    external: bool,
}

impl Tensor {
    pub fn element_count(&self) -> usize {
        self.dims.iter().map(|&d| d.max(0) as usize).product()
    }

    /// The values as f32, in row-major order.
    pub fn to_f32(&self) -> Result<Vec<f32>, OnnxError> {
        if self.external {
            return Err(OnnxError::ExternalData { name: self.name.clone() });
        }
        if self.data_type != DATA_TYPE_FLOAT {
            return Err(OnnxError::UnsupportedType { name: self.name.clone(), data_type: self.data_type });
        }
        let want = self.element_count();
        let values: Vec<f32> = if self.raw_data.is_empty() {
            self.float_data.clone()
        } else {
            self.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
        };
        if values.len() != want || (!self.raw_data.is_empty() && self.raw_data.len() != want * 4) {
            return Err(OnnxError::SizeMismatch {
                name: self.name.clone(),
                dims: self.dims.clone(),
                got: values.len() * 4,
                want: want * 4,
            });
        }
        Ok(values)
    }

    /// The values as i64 (shape and index constants).
    pub fn to_i64(&self) -> Result<Vec<i64>, OnnxError> {
        if self.data_type != DATA_TYPE_INT64 {
            return Err(OnnxError::UnsupportedType { name: self.name.clone(), data_type: self.data_type });
        }
        if self.raw_data.is_empty() {
            Ok(self.int64_data.clone())
        } else {
            Ok(self.raw_data.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect())
        }
    }
}

/// A node attribute; only the kinds the fetcher reads are kept.
#[derive(Debug, Clone, Default)]
pub struct Attribute {
    pub name: String,
    pub f: f32,
    pub i: i64,
    pub s: Vec<u8>,
    pub t: Option<Tensor>,
    pub floats: Vec<f32>,
    pub ints: Vec<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct Node {
    pub name: String,
    pub op_type: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attributes: Vec<Attribute>,
}

impl Node {
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub initializers: Vec<Tensor>,
}

impl Graph {
    /// Initializers by name.
    pub fn initializer_map(&self) -> HashMap<&str, &Tensor> {
        self.initializers.iter().map(|t| (t.name.as_str(), t)).collect()
    }
}

/// Decodes a serialized ModelProto and returns its graph.
pub fn parse_model(bytes: &[u8]) -> Result<Graph, OnnxError> {
    let mut graph = None;
    for field in Fields::new(bytes, 0) {
        let field = field?;
        // ModelProto.graph = 7
        if field.number == 7 {
            graph = Some(parse_graph(field.bytes()?, field.offset)?);
        }
    }
    graph.ok_or(OnnxError::NoGraph)
}

fn parse_graph(bytes: &[u8], base: usize) -> Result<Graph, OnnxError> {
    let mut graph = Graph::default();
    for field in Fields::new(bytes, base) {
        let field = field?;
        match field.number {
            1 => graph.nodes.push(parse_node(field.bytes()?, field.offset)?),
            5 => graph.initializers.push(parse_tensor(field.bytes()?, field.offset)?),
            _ => {}
        }
    }
    Ok(graph)
}

fn parse_node(bytes: &[u8], base: usize) -> Result<Node, OnnxError> {
    let mut node = Node::default();
    for field in Fields::new(bytes, base) {
        let field = field?;
        match field.number {
            1 => node.inputs.push(field.string()?),
            2 => node.outputs.push(field.string()?),
            3 => node.name = field.string()?,
            4 => node.op_type = field.string()?,
            5 => node.attributes.push(parse_attribute(field.bytes()?, field.offset)?),
            _ => {}
        }
    }
    Ok(node)
}

fn parse_attribute(bytes: &[u8], base: usize) -> Result<Attribute, OnnxError> {
    let mut attribute = Attribute::default();
    for field in Fields::new(bytes, base) {
        let field = field?;
        match field.number {
            1 => attribute.name = field.string()?,
            2 => attribute.f = f32::from_bits(field.fixed32()?),
            3 => attribute.i = field.varint()? as i64,
            4 => attribute.s = field.bytes()?.to_vec(),
            5 => attribute.t = Some(parse_tensor(field.bytes()?, field.offset)?),
            7 => field.repeated_f32(&mut attribute.floats)?,
            8 => field.repeated_varint(&mut attribute.ints)?,
            _ => {}
        }
    }
    Ok(attribute)
}

fn parse_tensor(bytes: &[u8], base: usize) -> Result<Tensor, OnnxError> {
    let mut tensor = Tensor::default();
    for field in Fields::new(bytes, base) {
        let field = field?;
        match field.number {
            1 => field.repeated_varint(&mut tensor.dims)?,
            2 => tensor.data_type = field.varint()? as i32,
            4 => field.repeated_f32(&mut tensor.float_data)?,
            7 => field.repeated_varint(&mut tensor.int64_data)?,
            8 => tensor.name = field.string()?,
            9 => tensor.raw_data = field.bytes()?.to_vec(),
            // data_location = 14: 1 means EXTERNAL
            14 => tensor.external = field.varint()? == 1,
            _ => {}
        }
    }
    Ok(tensor)
}

/// One field of a protobuf message.
struct Field<'a> {
    number: u64,
    value: Value<'a>,
    offset: usize,
}

enum Value<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl<'a> Field<'a> {
    fn malformed(&self, what: &'static str) -> OnnxError {
        OnnxError::Malformed { offset: self.offset, what }
    }
    fn bytes(&self) -> Result<&'a [u8], OnnxError> {
        match self.value {
            Value::Bytes(b) => Ok(b),
            _ => Err(self.malformed("expected a length-delimited field")),
        }
    }
    fn string(&self) -> Result<String, OnnxError> {
        std::str::from_utf8(self.bytes()?).map(str::to_owned).map_err(|_| self.malformed("string is not UTF-8"))
    }
    fn varint(&self) -> Result<u64, OnnxError> {
        match self.value {
            Value::Varint(v) => Ok(v),
            _ => Err(self.malformed("expected a varint field")),
        }
    }
    fn fixed32(&self) -> Result<u32, OnnxError> {
        match self.value {
            Value::Fixed32(v) => Ok(v),
            _ => Err(self.malformed("expected a 32-bit field")),
        }
    }
    /// A repeated integer field, packed or not.
    fn repeated_varint(&self, out: &mut Vec<i64>) -> Result<(), OnnxError> {
        match self.value {
            Value::Varint(v) => out.push(v as i64),
            Value::Bytes(mut b) => {
                let mut offset = self.offset;
                while !b.is_empty() {
                    let (v, used) = read_varint(b, offset)?;
                    out.push(v as i64);
                    b = &b[used..];
                    offset += used;
                }
            }
            _ => return Err(self.malformed("expected a repeated integer field")),
        }
        Ok(())
    }
    /// A repeated float field, packed or not.
    fn repeated_f32(&self, out: &mut Vec<f32>) -> Result<(), OnnxError> {
        match self.value {
            Value::Fixed32(v) => out.push(f32::from_bits(v)),
            Value::Bytes(b) if b.len() % 4 == 0 => {
                out.extend(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            }
            _ => return Err(self.malformed("expected a repeated float field")),
        }
        Ok(())
    }
}

/// Iterates over the fields of one message.
struct Fields<'a> {
    bytes: &'a [u8],
    position: usize,
    base: usize,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8], base: usize) -> Self {
        Fields { bytes, position: 0, base }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, OnnxError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.position >= self.bytes.len() {
            return None;
        }
        let result = self.read_field();
        if result.is_err() {
            self.position = self.bytes.len();
        }
        Some(result)
    }
}

impl<'a> Fields<'a> {
    fn read_field(&mut self) -> Result<Field<'a>, OnnxError> {
        let offset = self.base + self.position;
        let (key, used) = read_varint(&self.bytes[self.position..], offset)?;
        self.position += used;
        let rest = &self.bytes[self.position..];
        let truncated = OnnxError::Malformed { offset, what: "field runs past the end of its message" };
        let value = match key & 7 {
            0 => {
                let (v, used) = read_varint(rest, offset)?;
                self.position += used;
                Value::Varint(v)
            }
            1 => {
                rest.get(..8).ok_or(truncated)?;
                self.position += 8;
                Value::Fixed64
            }
            2 => {
                let (len, used) = read_varint(rest, offset)?;
                let start = used;
                let end = usize::try_from(len).ok().and_then(|l| start.checked_add(l));
                let bytes = end.and_then(|end| rest.get(start..end)).ok_or(truncated)?;
                self.position += used + bytes.len();
                Value::Bytes(bytes)
            }
            5 => {
                let b: [u8; 4] = rest.get(..4).ok_or(truncated)?.try_into().unwrap();
                self.position += 4;
                Value::Fixed32(u32::from_le_bytes(b))
            }
            _ => return Err(OnnxError::Malformed { offset, what: "unknown wire type" }),
        };
        Ok(Field { number: key >> 3, value, offset })
    }
}

fn read_varint(bytes: &[u8], offset: usize) -> Result<(u64, usize), OnnxError> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(OnnxError::Malformed { offset, what: "bad varint" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_hand_encoded_tensor() {
        // TensorProto { dims: [2] (packed), data_type: 1, name: "w", raw_data: [1.0, -2.5] }
        let mut bytes = vec![0x0a, 0x01, 0x02, 0x10, 0x01, 0x42, 0x01, b'w', 0x4a, 0x08];
        bytes.extend(1.0f32.to_le_bytes());
        bytes.extend((-2.5f32).to_le_bytes());
        let tensor = parse_tensor(&bytes, 0).unwrap();
        assert_eq!(tensor.name, "w");
        assert_eq!(tensor.dims, vec![2]);
        assert_eq!(tensor.to_f32().unwrap(), vec![1.0, -2.5]);
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let bytes = [0x4a, 0x08, 0x00];
        assert!(matches!(parse_tensor(&bytes, 0), Err(OnnxError::Malformed { .. })));
    }
}
