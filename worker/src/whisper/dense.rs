//! f32 matrix products of a few rows (a beam search's step: one row per beam) that read
//! each weight once for all the rows.
//!
//! For a product of more than one row candle's matrix kernel packs its right-hand
//! operand, the weights, on every call: for base's logits (51 865 × 512) that is 106 MB
//! copied a step, more than half of a five-beam step in f32. One row takes its
//! matrix-vector path, which this leaves alone: greedy decoding stays bit for bit.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use pulp::Simd;
use rayon::prelude::*;

use super::ops::{prefetch, rows_from_blocks, rows_of, values_of, vectorised};

/// The most rows taken here (a beam of up to 8); more go to candle's kernel, whose
/// packing they amortise.
const MAX_ROWS: usize = 8;

/// Outputs per parallel task.
const TASK_OUTPUTS: usize = 256;

/// How far ahead of the kernel a weight row is fetched, in floats (4 KB).
const PREFETCH_AHEAD: usize = 1024;

/// Weights are read in pairs of vectors; every Whisper width is a multiple of this.
const WIDTH_STEP: usize = 32;

/// `x · Wᵀ` for `x` `[…, k]` of 2 to 8 rows and `weight` `[n, k]`, both f32 on the CPU;
/// `None` where this does not apply (candle multiplies them).
pub fn few_rows(x: &Tensor, weight: &Tensor) -> Result<Option<Tensor>> {
    let cpu_f32 = |t: &Tensor| t.device().is_cpu() && t.dtype() == candle_core::DType::F32;
    let Some(&k) = x.dims().last() else {
        return Ok(None);
    };
    let (n, weight_k) = weight.dims2()?;
    let rows = x.elem_count() / k.max(1);
    if !cpu_f32(x) || !cpu_f32(weight) || weight_k != k || !k.is_multiple_of(WIDTH_STEP) {
        return Ok(None);
    }
    if !(2..=MAX_ROWS).contains(&rows) || n == 0 || !weight.is_contiguous() {
        return Ok(None);
    }
    Ok(Some(x.contiguous()?.apply_op2_no_bwd(weight, &FewRows { n, k })?))
}

struct FewRows {
    n: usize,
    k: usize,
}

impl CustomOp2 for FewRows {
    fn name(&self) -> &'static str {
        "whisper-few-rows"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, shape) = rows_of(self.name(), s1, l1, self.k, self.n)?;
        let weight = values_of(self.name(), s2, l2)?;
        let (n, k) = (self.n, self.k);
        let m = x.len() / k;
        // Task after task, `[tasks][m][TASK_OUTPUTS]` (the last task padded).
        let mut by_task = vec![0f32; m * n.next_multiple_of(TASK_OUTPUTS)];
        let task = |(task, out): (usize, &mut [f32])| {
            let first = task * TASK_OUTPUTS;
            let last = (first + TASK_OUTPUTS).min(n);
            vectorised(Outputs {
                x,
                k,
                weight: &weight[first * k..last * k],
                out,
            });
        };
        // One thread: no tasks (a hand-off to the pool costs a context switch).
        if rayon::current_num_threads() > 1 {
            by_task.par_chunks_mut(TASK_OUTPUTS * m).enumerate().for_each(task);
        } else {
            by_task.chunks_mut(TASK_OUTPUTS * m).enumerate().for_each(task);
        }
        let out = rows_from_blocks(by_task, m, n, TASK_OUTPUTS);
        Ok((CpuStorage::F32(out), shape))
    }
}

/// The rows `x` (`m` of `k` values) against the weight rows `weight`, written to `out`
/// as `[m][outputs]` (`outputs` at least the weight rows).
struct Outputs<'a> {
    x: &'a [f32],
    k: usize,
    weight: &'a [f32],
    out: &'a mut [f32],
}

impl pulp::WithSimd for Outputs<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        match self.x.len() / self.k {
            2 => self.run::<S, 2>(simd),
            3 => self.run::<S, 3>(simd),
            4 => self.run::<S, 4>(simd),
            5 => self.run::<S, 5>(simd),
            6 => self.run::<S, 6>(simd),
            7 => self.run::<S, 7>(simd),
            _ => self.run::<S, 8>(simd),
        }
    }
}

impl Outputs<'_> {
    /// `R` rows, two accumulators each (alternate vectors of the row) so that enough
    /// independent sums keep the FMA units busy.
    #[inline(always)]
    fn run<S: Simd, const R: usize>(self, simd: S) {
        let Outputs { x, k, weight, out } = self;
        if x.len() != R * k {
            return;
        }
        let outputs = out.len() / R;
        let rows: [&[S::f32s]; R] = std::array::from_fn(|r| S::as_simd_f32s(&x[r * k..(r + 1) * k]).0);
        for (j, w) in weight.chunks_exact(k).take(outputs).enumerate() {
            let (vectors, _) = S::as_simd_f32s(w);
            let mut acc = [[simd.splat_f32s(0.0); 2]; R];
            for (c, pair) in vectors.chunks_exact(2).enumerate() {
                prefetch(w.as_ptr().wrapping_add(c * 2 * S::F32_LANES + PREFETCH_AHEAD));
                for (acc, row) in acc.iter_mut().zip(&rows) {
                    acc[0] = simd.mul_add_e_f32s(row[2 * c], pair[0], acc[0]);
                    acc[1] = simd.mul_add_e_f32s(row[2 * c + 1], pair[1], acc[1]);
                }
            }
            for (r, [a, b]) in acc.into_iter().enumerate() {
                out[r * outputs + j] = simd.reduce_sum_f32s(simd.add_f32s(a, b));
            }
        }
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing test should stop right there")]
mod tests {
    use candle_core::{DType, Device};

    use super::*;

    #[test]
    fn products_match_candle_for_a_beam_s_rows() {
        // A partial last task (300 outputs), beams of 2, 5 and 8, rows as `[b, 1, k]`.
        for (m, n, k) in [(2, 300, 64), (5, 40, 512), (8, 257, 96)] {
            let x = Tensor::randn(0f32, 1.0, (m, 1, k), &Device::Cpu).unwrap();
            let w = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu).unwrap();
            let got = few_rows(&x, &w).unwrap().unwrap();
            let want = x.broadcast_matmul(&w.t().unwrap()).unwrap();
            assert_eq!(got.dims(), &[m, 1, n]);
            let diff = (got - want)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-3, "m={m} n={n} k={k}: off by {diff}");
        }
    }

    #[test]
    fn declines_what_candle_should_multiply() {
        let w = Tensor::zeros((4, 64), DType::F32, &Device::Cpu).unwrap();
        let one = Tensor::zeros((1, 64), DType::F32, &Device::Cpu).unwrap();
        assert!(
            few_rows(&one, &w).unwrap().is_none(),
            "one row: candle's matrix-vector path"
        );
        let nine = Tensor::zeros((9, 64), DType::F32, &Device::Cpu).unwrap();
        assert!(few_rows(&nine, &w).unwrap().is_none());
        let half = Tensor::zeros((2, 64), DType::F16, &Device::Cpu).unwrap();
        assert!(few_rows(&half, &w.to_dtype(DType::F16).unwrap()).unwrap().is_none());
        let odd = Tensor::zeros((2, 40), DType::F32, &Device::Cpu).unwrap();
        let w40 = Tensor::zeros((4, 40), DType::F32, &Device::Cpu).unwrap();
        assert!(few_rows(&odd, &w40).unwrap().is_none());
    }
}
