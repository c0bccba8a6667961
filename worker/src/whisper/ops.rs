//! CPU kernels candle lacks in a fast form: the exact (erf) GELU with a rational erf
//! that the compiler vectorises (candle's calls libm's scalar `erff` per value), and a
//! softmax for the decoder's small score rows (candle's spreads even a few rows over
//! its thread pool, which costs more than the arithmetic).

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

/// `erf(x)` for f32 to within a few ulp: Eigen's rational approximation
/// (`generic_fast_erf_float`), branch-free so that loops over it vectorise.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = x2 * p + -2.101_024e-6;
    p = x2 * p + -5.692_506_4e-5;
    p = x2 * p + -7.349_906_3e-4;
    p = x2 * p + -2.954_6e-3;
    p = x2 * p + -1.609_603_3e-2;
    let p = x * p;
    let mut q = x2 * -1.456_607_2e-5 + -2.133_740_6e-4;
    q = x2 * q + -1.682_827e-3;
    q = x2 * q + -7.373_329_2e-3;
    q = x2 * q + -1.426_474e-2;
    p / q
}

#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "whisper-gelu-erf"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(values) = storage else {
            candle_core::bail!("whisper-gelu-erf: f32 only");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("whisper-gelu-erf: contiguous input only");
        };
        let out: Vec<f32> = values[start..end].iter().map(|&x| gelu(x)).collect();
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// Exact GELU: the vectorised kernel for contiguous f32 on the CPU, candle's elsewhere.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
        x.contiguous()?.apply_op1_no_bwd(&GeluErf)
    } else {
        x.gelu_erf()
    }
}

struct SoftmaxLastDim;

impl CustomOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "whisper-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(values) = storage else {
            candle_core::bail!("whisper-softmax: f32 only");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("whisper-softmax: contiguous input only");
        };
        let n = layout.shape().dims().last().copied().unwrap_or(1).max(1);
        let mut out = values[start..end].to_vec();
        for row in out.chunks_exact_mut(n) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for v in row.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            let inv = 1.0 / sum;
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// Values at which candle's parallel softmax starts to pay.
const SMALL_SOFTMAX: usize = 1 << 16;

/// Softmax over the last dimension.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 && x.elem_count() <= SMALL_SOFTMAX {
        x.contiguous()?.apply_op1_no_bwd(&SoftmaxLastDim)
    } else {
        candle_nn::ops::softmax_last_dim(x)
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing test should stop right there")]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_libm_to_f32_precision() {
        let mut worst = 0f64;
        for i in -80_000..=80_000 {
            let x = i as f32 / 10_000.0;
            let exact = libm_erf(f64::from(x));
            worst = worst.max((f64::from(erf(x)) - exact).abs());
        }
        assert!(worst < 5e-7, "max |error| {worst:e}");
    }

    /// erf in f64 from its Taylor series (|x| < 3) or continued fraction (|x| ≥ 3).
    fn libm_erf(x: f64) -> f64 {
        let a = x.abs();
        let v = if a < 3.0 {
            let (mut term, mut sum, mut n) = (a, a, 0.0);
            while term.abs() > 1e-17 {
                n += 1.0;
                term *= -a * a / n;
                sum += term / (2.0 * n + 1.0);
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc(a) = exp(-a²)/sqrt(pi) · 1/(a + 1/2/(a + 1/(a + 3/2/(a + …))))
            let mut f = a;
            for k in (1..60).rev() {
                f = a + (f64::from(k) / 2.0) / f;
            }
            1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / f
        };
        v.copysign(x)
    }

    #[test]
    fn small_softmax_matches_candle() {
        let x = Tensor::randn(0f32, 3.0, (2, 3, 1, 100), &candle_core::Device::Cpu).unwrap();
        let ours: Vec<f32> = softmax_last_dim(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let theirs: Vec<f32> = candle_nn::ops::softmax_last_dim(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn gelu_op_matches_candle_gelu_erf() {
        let x = Tensor::arange(-600i64, 600, &candle_core::Device::Cpu)
            .unwrap()
            .to_dtype(candle_core::DType::F32)
            .unwrap()
            .affine(0.01, 0.0)
            .unwrap();
        let ours: Vec<f32> = gelu_erf(&x).unwrap().to_vec1().unwrap();
        let theirs: Vec<f32> = x.gelu_erf().unwrap().to_vec1().unwrap();
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).abs() < 1e-6 * b.abs().max(1.0), "{a} vs {b}");
        }
    }
}
