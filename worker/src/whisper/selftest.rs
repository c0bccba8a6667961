//! A device's self-test before it takes work: every operation the model uses, run in
//! the device's compute dtype and compared with the same operation on the CPU in f32;
//! then, where a tiny model is installed, a bundled five-second recording transcribed
//! on the device and on the CPU, which must hear the same words. A GPU whose driver
//! cannot run the kernels (PTX newer than the driver, a missing library, a broken
//! card) fails here, with the driver's message, rather than on a client's file.

use std::ops::ControlFlow;
use std::path::Path;

use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{Conv1d, Conv1dConfig, LayerNorm};

use super::{ComputeType, DecodeOptions, Whisper};

/// Speech synthesised for the test (espeak-ng, en-us, 130 words a minute: "Every
/// graphics card is tested before it takes any work."), 16 kHz mono, 4.6 s.
const CLIP: &[u8] = include_bytes!("../../assets/selftest.wav");

/// What passed.
#[derive(Debug, Clone, PartialEq)]
pub struct Passed {
    /// Operations checked.
    pub ops: usize,
    /// The words both devices heard, when a tiny model was there to listen.
    pub heard: Option<String>,
}

/// Runs the test on `device`: the ops in `dtype`; with `tiny` (a tiny model's folder,
/// if one is installed), the clip heard with the model loaded as `compute` says. The
/// error says what failed and how (the driver's message included).
pub fn run(device: &Device, dtype: DType, tiny: Option<&Path>, compute: ComputeType) -> Result<Passed, String> {
    let ops = check_ops(device, dtype)?;
    device
        .synchronize()
        .map_err(|e| format!("synchronising the device: {e}"))?;
    let heard = match tiny {
        Some(dir) => Some(listen(device, dir, compute)?),
        None => None,
    };
    Ok(Passed { ops, heard })
}

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

/// One operation, on the CPU in f32 and on the device in `dtype`, from the same inputs.
struct Case {
    name: &'static str,
    run: fn(&[Tensor]) -> candle_core::Result<Tensor>,
    shapes: &'static [&'static [usize]],
}

const CASES: &[Case] = &[
    Case {
        name: "matmul",
        run: |x| x[0].matmul(&x[1]),
        shapes: &[&[64, 96], &[96, 80]],
    },
    Case {
        name: "batched matmul (attention)",
        run: |x| x[0].matmul(&x[1].t()?),
        shapes: &[&[2, 4, 24, 16], &[2, 4, 40, 16]],
    },
    Case {
        name: "add and multiply",
        run: |x| (x[0].broadcast_add(&x[1])? * 0.5)?.broadcast_mul(&x[1]),
        shapes: &[&[3, 50, 64], &[64]],
    },
    Case {
        name: "softmax",
        run: |x| super::ops::softmax_last_dim(&(&x[0] * 4.0)?),
        shapes: &[&[2, 3, 17, 300]],
    },
    Case {
        name: "gelu",
        run: |x| super::ops::gelu_erf(&(&x[0] * 3.0)?),
        shapes: &[&[4, 700]],
    },
    Case {
        name: "layer norm",
        run: |x| LayerNorm::new(x[1].clone(), x[2].clone(), 1e-5).forward(&x[0]),
        shapes: &[&[2, 30, 64], &[64], &[64]],
    },
    Case {
        name: "convolution (stride 2)",
        run: |x| {
            let config = Conv1dConfig {
                padding: 1,
                stride: 2,
                dilation: 1,
                groups: 1,
                cudnn_fwd_algo: None,
            };
            Conv1d::new(x[1].clone(), Some(x[2].clone()), config).forward(&x[0])
        },
        shapes: &[&[1, 16, 120], &[24, 16, 3], &[24]],
    },
    Case {
        name: "embedding, index select, narrow, cat",
        run: |x| {
            let ids = Tensor::new(&[3u32, 0, 7, 7, 1], x[0].device())?;
            let rows = x[0].embedding(&ids)?;
            let picked = x[0].index_select(&Tensor::new(&[5u32, 2], x[0].device())?, 0)?;
            Tensor::cat(&[rows.narrow(0, 1, 3)?, picked], 0)
        },
        shapes: &[&[9, 32]],
    },
    Case {
        name: "in-place cache write",
        run: |x| {
            let cache = Tensor::zeros((2, 4, 12, 8), x[0].dtype(), x[0].device())?;
            cache.slice_set(&x[0], 2, 5)?;
            Ok(cache)
        },
        shapes: &[&[2, 4, 3, 8]],
    },
    Case {
        name: "transpose, reduce, exp",
        run: |x| x[0].transpose(1, 2)?.contiguous()?.exp()?.sum_keepdim(D::Minus1),
        shapes: &[&[2, 9, 13]],
    },
];

fn check_ops(device: &Device, dtype: DType) -> Result<usize, String> {
    // f16 keeps ~3 significant digits; f32 differs from itself only in summation order.
    let tolerance = if dtype == DType::F32 { 1e-4 } else { 2e-2 };
    for (i, case) in CASES.iter().enumerate() {
        let fail = |what: String| format!("{} in {dtype:?} on {device:?}: {what}", case.name);
        let inputs: Vec<Tensor> = case
            .shapes
            .iter()
            .enumerate()
            .map(|(j, shape)| {
                let n = shape.iter().product();
                Tensor::from_vec(values(n, (i * 8 + j) as u32), *shape, &Device::Cpu)
            })
            .collect::<candle_core::Result<_>>()
            .map_err(|e| fail(e.to_string()))?;
        let expected = (case.run)(&inputs).map_err(|e| fail(format!("on the CPU: {e}")))?;
        let on_device = inputs
            .iter()
            .map(|t| t.to_dtype(dtype)?.to_device(device))
            .collect::<candle_core::Result<Vec<_>>>()
            .map_err(|e| fail(format!("copying to the device: {e}")))?;
        let got = (case.run)(&on_device)
            .and_then(|t| t.to_dtype(DType::F32)?.to_device(&Device::Cpu))
            .map_err(|e| fail(e.to_string()))?;
        if got.dims() != expected.dims() {
            return Err(fail(format!("shape {:?}, expected {:?}", got.dims(), expected.dims())));
        }
        let flat = |t: &Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>());
        let (got, expected) = (
            flat(&got).map_err(|e| fail(e.to_string()))?,
            flat(&expected).map_err(|e| fail(e.to_string()))?,
        );
        let scale = expected.iter().fold(1f32, |m, v| m.max(v.abs()));
        if let Some((k, (g, e))) = got
            .iter()
            .zip(&expected)
            .enumerate()
            // NaN counts as a mismatch.
            .find(|(_, (g, e))| (*g - *e).abs().is_nan() || (*g - *e).abs() > tolerance * scale)
        {
            return Err(fail(format!("value {k} is {g}, expected {e}")));
        }
    }
    Ok(CASES.len())
}

/// The words of `text`, lower case, without punctuation.
fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric())
                .collect::<String>()
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// The bundled clip heard on `device` and on the CPU: the same words, or an error.
fn listen(device: &Device, tiny: &Path, compute: ComputeType) -> Result<String, String> {
    let scratch = tempfile_path();
    std::fs::write(&scratch, CLIP).map_err(|e| format!("cannot write {}: {e}", scratch.display()))?;
    let heard = |on: &Device, compute: ComputeType| -> Result<String, String> {
        let mut whisper = Whisper::load_as(tiny, on, compute).map_err(|e| format!("loading on {on:?}: {e}"))?;
        let options = DecodeOptions {
            language: Some("en".into()),
            beam_size: 1,
            ..DecodeOptions::default()
        };
        let t = whisper
            .transcribe(&scratch, &options, &mut |_| ControlFlow::Continue(()))
            .map_err(|e| format!("transcribing on {on:?}: {e}"))?;
        Ok(t.segments.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join(" "))
    };
    let result = heard(device, compute).and_then(|ours| {
        let reference = heard(&Device::Cpu, ComputeType::Float32)?;
        if words(&ours) == words(&reference) && !words(&reference).is_empty() {
            Ok(ours)
        } else {
            Err(format!("the device heard {ours:?}, the CPU {reference:?}"))
        }
    });
    let _ = std::fs::remove_file(&scratch);
    result
}

fn tempfile_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "rushes-selftest-{}-{}.wav",
        std::process::id(),
        uuid::Uuid::new_v4()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_passes_on_the_cpu_in_f32_and_f16() {
        for dtype in [DType::F32, DType::F16] {
            assert_eq!(
                run(&Device::Cpu, dtype, None, ComputeType::Auto),
                Ok(Passed {
                    ops: CASES.len(),
                    heard: None
                })
            );
        }
    }

    #[test]
    fn words_ignore_case_and_punctuation() {
        assert_eq!(
            words(" Rushes checks its card, before ANY work."),
            ["rushes", "checks", "its", "card", "before", "any", "work"]
        );
    }
}
