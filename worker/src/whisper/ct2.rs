//! Reader of CTranslate2 `model.bin` files (spec version 6): named variables with their
//! shapes and data, rank-0 variables as configuration, and aliases (tied weights).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

/// Why a `model.bin` cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum Ct2Error {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("not a CTranslate2 model: {0}")]
    Format(String),
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

/// A scalar configuration variable (rank 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar {
    Int(i64),
    Float(f64),
}

impl Scalar {
    pub fn as_i64(self) -> i64 {
        match self {
            Scalar::Int(v) => v,
            Scalar::Float(v) => v as i64,
        }
    }
}

/// The contents of a `model.bin`.
#[derive(Debug)]
pub struct Ct2Model {
    pub spec: String,
    pub revision: u32,
    /// Variables of rank ≥ 1 in their stored dtype (int8 stays int8 as `U8` bytes: see
    /// [`Ct2Model::int8`]), on the CPU.
    pub tensors: HashMap<String, Tensor>,
    /// Names of variables stored as int8 (their `U8` tensors hold the raw bytes).
    pub int8: Vec<String>,
    pub scalars: HashMap<String, Scalar>,
    /// `alias → target`.
    pub aliases: HashMap<String, String>,
}

impl Ct2Model {
    /// A tensor by name, following aliases.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors
            .get(name)
            .or_else(|| self.aliases.get(name).and_then(|t| self.tensors.get(t)))
    }
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Ct2Error> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| Ct2Error::Format(format!("truncated at byte {} (wanted {n} more bytes)", self.pos)))?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, Ct2Error> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Ct2Error> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, Ct2Error> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self) -> Result<String, Ct2Error> {
        let n = usize::from(self.u16()?);
        let b = self.take(n)?;
        let b = b.strip_suffix(&[0]).unwrap_or(b);
        String::from_utf8(b.to_vec()).map_err(|_| Ct2Error::Format("a name is not UTF-8".into()))
    }
}

/// Reads `path` (a CTranslate2 `model.bin`).
pub fn read(path: &Path) -> Result<Ct2Model, Ct2Error> {
    let data = std::fs::read(path).map_err(|source| Ct2Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse(&data)
}

/// Parses the bytes of a `model.bin`.
pub fn parse(data: &[u8]) -> Result<Ct2Model, Ct2Error> {
    let mut c = Cursor { data, pos: 0 };
    let version = c.u32()?;
    if !(5..=6).contains(&version) {
        return Err(Ct2Error::Format(format!(
            "unsupported binary version {version} (5 or 6 expected)"
        )));
    }
    let spec = c.string()?;
    let revision = c.u32()?;
    let count = c.u32()?;
    let mut tensors = HashMap::new();
    let mut scalars = HashMap::new();
    let mut int8 = Vec::new();
    for _ in 0..count {
        let name = c.string()?;
        let rank = usize::from(c.u8()?);
        let dims = (0..rank)
            .map(|_| c.u32().map(|d| d as usize))
            .collect::<Result<Vec<_>, _>>()?;
        let dtype = c.u8()?;
        let nbytes = c.u32()? as usize;
        let bytes = c.take(nbytes)?;
        let width = match dtype {
            0 | 3 => 4,
            1 => 1,
            2 | 4 | 5 => 2,
            d => return Err(Ct2Error::Format(format!("variable `{name}` has unknown dtype {d}"))),
        };
        let elements: usize = dims.iter().product();
        if elements * width != nbytes {
            return Err(Ct2Error::Format(format!(
                "variable `{name}`: {nbytes} bytes for shape {dims:?} of {width}-byte values"
            )));
        }
        if rank == 0 {
            let v = match dtype {
                0 => Scalar::Float(f64::from(f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))),
                1 => Scalar::Int(i64::from(bytes[0] as i8)),
                2 => Scalar::Int(i64::from(i16::from_le_bytes([bytes[0], bytes[1]]))),
                3 => Scalar::Int(i64::from(i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))),
                _ => {
                    let t = Tensor::from_raw_buffer(bytes, raw_dtype(dtype), &[1], &Device::Cpu)?;
                    Scalar::Float(f64::from(t.to_dtype(DType::F32)?.to_vec1::<f32>()?[0]))
                }
            };
            scalars.insert(name, v);
            continue;
        }
        let tensor = match dtype {
            2 => {
                // No i16 in candle: widen to i64.
                let v: Vec<i64> = bytes
                    .chunks_exact(2)
                    .map(|b| i64::from(i16::from_le_bytes([b[0], b[1]])))
                    .collect();
                Tensor::from_vec(v, dims, &Device::Cpu)?
            }
            3 => {
                let v: Vec<i64> = bytes
                    .chunks_exact(4)
                    .map(|b| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                    .collect();
                Tensor::from_vec(v, dims, &Device::Cpu)?
            }
            _ => {
                if dtype == 1 {
                    int8.push(name.clone());
                }
                Tensor::from_raw_buffer(bytes, raw_dtype(dtype), &dims, &Device::Cpu)?
            }
        };
        tensors.insert(name, tensor);
    }
    let mut aliases = HashMap::new();
    if c.pos < data.len() {
        let n = c.u32()?;
        for _ in 0..n {
            let alias = c.string()?;
            let target = c.string()?;
            aliases.insert(alias, target);
        }
    }
    Ok(Ct2Model {
        spec,
        revision,
        tensors,
        int8,
        scalars,
        aliases,
    })
}

fn raw_dtype(code: u8) -> DType {
    match code {
        0 => DType::F32,
        1 => DType::U8,
        4 => DType::F16,
        _ => DType::BF16,
    }
}

/// Dequantizes an int8 CT2 weight (`U8` bytes holding i8) with its per-row `scale`
/// (CT2 stores `q = round(w * scale)`).
pub fn dequantize(q: &Tensor, scale: &Tensor) -> Result<Tensor, candle_core::Error> {
    let bytes: Vec<u8> = q.flatten_all()?.to_vec1()?;
    let v: Vec<f32> = bytes.iter().map(|&b| f32::from(b as i8)).collect();
    let w = Tensor::from_vec(v, q.dims(), &Device::Cpu)?;
    let scale = scale.to_dtype(DType::F32)?;
    let scale = if w.rank() == 2 {
        scale.reshape((w.dim(0)?, 1))?
    } else {
        scale
    };
    w.broadcast_div(&scale)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing test should stop right there")]
mod tests {
    use super::*;

    fn push_str(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    fn push_var(out: &mut Vec<u8>, name: &str, dims: &[u32], dtype: u8, data: &[u8]) {
        push_str(out, name);
        out.push(dims.len() as u8);
        for d in dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.push(dtype);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
    }

    fn sample() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&6u32.to_le_bytes());
        push_str(&mut b, "WhisperSpec");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&4u32.to_le_bytes());
        push_var(&mut b, "encoder/num_heads", &[], 2, &6i16.to_le_bytes());
        let f32s: Vec<u8> = [1.0f32, -2.0, 0.5, 4.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        push_var(&mut b, "decoder/embeddings/weight", &[2, 2], 0, &f32s);
        // f16 1.0 = 0x3C00, -2.0 = 0xC000
        push_var(&mut b, "encoder/conv1/bias", &[2], 4, &[0x00, 0x3C, 0x00, 0xC0]);
        push_var(&mut b, "q/weight", &[2, 2], 1, &[2u8, 254u8, 4, 0]);
        b.extend_from_slice(&1u32.to_le_bytes());
        push_str(&mut b, "decoder/projection/weight");
        push_str(&mut b, "decoder/embeddings/weight");
        b
    }

    #[test]
    fn reads_variables_scalars_and_aliases() {
        let m = parse(&sample()).unwrap();
        assert_eq!(m.spec, "WhisperSpec");
        assert_eq!(m.revision, 3);
        assert_eq!(m.scalars["encoder/num_heads"], Scalar::Int(6));
        let emb: Vec<Vec<f32>> = m.get("decoder/projection/weight").unwrap().to_vec2().unwrap();
        assert_eq!(emb, vec![vec![1.0, -2.0], vec![0.5, 4.0]]);
        let bias = m.tensors["encoder/conv1/bias"]
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(bias, vec![1.0, -2.0]);
        assert_eq!(m.int8, vec!["q/weight".to_owned()]);
        let scale = Tensor::new(&[2.0f32, 4.0], &Device::Cpu).unwrap();
        let w: Vec<Vec<f32>> = dequantize(&m.tensors["q/weight"], &scale).unwrap().to_vec2().unwrap();
        assert_eq!(w, vec![vec![1.0, -1.0], vec![1.0, 0.0]]);
    }

    #[test]
    fn refuses_truncated_and_foreign_files() {
        let b = sample();
        let err = parse(&b[..b.len() - 70]).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        let err = parse(b"PK\x03\x04 not a model").unwrap_err().to_string();
        assert!(err.contains("unsupported binary version"), "{err}");
    }
}
