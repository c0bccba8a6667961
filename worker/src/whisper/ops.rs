//! CPU kernels candle lacks in a fast form: the exact (erf) GELU with a rational erf,
//! a softmax with a vectorisable `exp` (candle's and Rust's call libm's scalar `expf`
//! per value, a tenth of a transcription's time), and `logsumexp` for the decoder's
//! 51 864 logits per token.
//!
//! Each loop runs under `pulp`'s runtime dispatch: the compiler vectorises it for the
//! CPU at hand (AVX2 and FMA on x86-64, AVX-512 where present) without `unsafe`, and
//! plain SSE2 code remains for older CPUs. The polynomials are written as fused
//! multiply-adds: one instruction each where the CPU has FMA (half the latency of a
//! multiply and an add), libm's exact `fmaf` where it has not (slower, same values).

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `erf(x)` for f32 to within a few ulp: Eigen's rational approximation
/// (`generic_fast_erf_float`), branch-free so that loops over it vectorise.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2.mul_add(-2.726_142_3e-10, 2.770_681_4e-8);
    p = x2.mul_add(p, -2.101_024e-6);
    p = x2.mul_add(p, -5.692_506_4e-5);
    p = x2.mul_add(p, -7.349_906_3e-4);
    p = x2.mul_add(p, -2.954_6e-3);
    p = x2.mul_add(p, -1.609_603_3e-2);
    let p = x * p;
    let mut q = x2.mul_add(-1.456_607_2e-5, -2.133_740_6e-4);
    q = x2.mul_add(q, -1.682_827e-3);
    q = x2.mul_add(q, -7.373_329_2e-3);
    q = x2.mul_add(q, -1.426_474e-2);
    p / q
}

/// `e^x` for f32 within 2 ulp of libm (Cephes' `expf`: reduction by ln 2 in two parts,
/// a degree-5 polynomial, the power of two built in the exponent bits); 0 below
/// e^-87 (the smallest normal), including −∞; inputs above 88 are taken as 88.
/// Branch-free and without a float-to-integer conversion (Rust's saturating `as i32`
/// is sixteen scalar conversions per AVX-512 vector), so that loops over it vectorise.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 · 2²³: adding it rounds a value below 2²² in magnitude to an integer, which
    // then sits in the sum's low mantissa bits.
    const SHIFTER: f32 = 12_582_912.0;
    let tiny = x < -87.0;
    let x = x.clamp(-87.0, 88.0);
    // n = round(x / ln 2), n in −126..=127.
    let shifted = x.mul_add(LOG2E, SHIFTER);
    let nf = shifted - SHIFTER;
    let r = nf.mul_add(-LN2_LO, nf.mul_add(-LN2_HI, x));
    let mut p = 1.987_569_1e-4_f32;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 0.5);
    let e = (p * r).mul_add(r, r) + 1.0;
    // 2ⁿ: n + 127 in the exponent bits.
    let n = shifted.to_bits().wrapping_sub(SHIFTER.to_bits());
    let scale = f32::from_bits(n.wrapping_add(127) << 23);
    if tiny { 0.0 } else { e * scale }
}

#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// Asks the CPU to bring the cache line holding `p` into its first-level cache ahead of
/// use: a decoder's step streams tens of MB of weights and audio keys from memory,
/// faster than the hardware's prefetcher fetches them once a product does more than
/// stream (several beams' rows). A hint: nothing on other architectures.
#[inline(always)]
pub(super) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    // SAFETY: a prefetch never faults and changes nothing the program can observe,
    // whatever the address (it may be past the end of the data).
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// A product's `[m, n]` rows out of the blocks of `width` outputs its kernel shared out,
/// laid out `[blocks][m][width]` (the last block padded to `width`).
pub(super) fn rows_from_blocks(mut by_block: Vec<f32>, m: usize, n: usize, width: usize) -> Vec<f32> {
    if m == 1 {
        // One row: already in order.
        by_block.truncate(n);
        return by_block;
    }
    let mut rows = vec![0f32; m * n];
    for (b, block) in by_block.chunks_exact(m * width).enumerate() {
        let valid = width.min(n.saturating_sub(b * width));
        for (r, values) in block.chunks_exact(width).enumerate() {
            rows[r * n + b * width..][..valid].copy_from_slice(&values[..valid]);
        }
    }
    rows
}

/// Runs a loop body compiled for the best instruction set of this CPU.
pub(super) fn vectorised<Op: pulp::WithSimd>(op: Op) -> Op::Output {
    pulp::Arch::new().dispatch(op)
}

/// The rows of a CPU op's input (contiguous f32 whose last dimension is `cols`) and
/// the shape of its output (the last dimension `outputs`); errors name `op`.
pub(super) fn rows_of<'a>(
    op: &str,
    storage: &'a CpuStorage,
    layout: &Layout,
    cols: usize,
    outputs: usize,
) -> Result<(&'a [f32], Shape)> {
    let data = values_of(op, storage, layout)?;
    let mut dims = layout.shape().dims().to_vec();
    match dims.last_mut() {
        Some(last) if *last == cols => *last = outputs,
        _ => candle_core::bail!("{op}: an input of {:?} for rows of {cols}", layout.shape().dims()),
    }
    Ok((data, Shape::from(dims)))
}

/// The values of a CPU op's input, which must be contiguous f32; errors name `op`.
pub(super) fn values_of<'a>(op: &str, storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: f32 only");
    };
    Ok(&data[contiguous(op, layout)?])
}

/// [`values_of`] for an op that writes its input in place.
fn values_of_mut<'a>(op: &str, storage: &'a mut CpuStorage, layout: &Layout) -> Result<&'a mut [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: f32 only");
    };
    Ok(&mut data[contiguous(op, layout)?])
}

/// Where a contiguous input's values lie in its storage.
fn contiguous(op: &str, layout: &Layout) -> Result<std::ops::Range<usize>> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(start..end),
        None => candle_core::bail!("{op}: contiguous input only"),
    }
}

/// `e^(x − max x)` over `row` in place; returns 1 / their sum (a softmax before its
/// last multiply).
#[inline(always)]
pub(super) fn exp_in_place(row: &mut [f32]) -> f32 {
    let max = max_of(row);
    for v in row.iter_mut() {
        *v = exp(*v - max);
    }
    1.0 / sum_of(row, |v| v)
}

/// Values per parallel task in the large kernels.
const PER_TASK: usize = 1 << 16;

struct GeluInPlace<'a>(&'a mut [f32]);

impl pulp::WithSimd for GeluInPlace<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        for v in self.0.iter_mut() {
            *v = gelu(*v);
        }
    }
}

struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "whisper-gelu-erf"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let mut out = values_of("whisper-gelu-erf", storage, layout)?.to_vec();
        out.par_chunks_mut(PER_TASK)
            .for_each(|chunk| vectorised(GeluInPlace(chunk)));
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

/// Independent partial results per reduction: vector lanes the compiler may fill
/// (a single running sum or maximum is one long dependency chain it must keep).
const LANES: usize = 8;

#[inline(always)]
fn max_of(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut blocks = x.chunks_exact(LANES);
    for block in &mut blocks {
        for (m, &v) in lanes.iter_mut().zip(block) {
            *m = if v > *m { v } else { *m };
        }
    }
    let larger = |m: f32, v: f32| if v > m { v } else { m };
    let tail = blocks.remainder().iter().copied().fold(f32::NEG_INFINITY, larger);
    lanes.iter().copied().fold(tail, larger)
}

/// `Σ f(v)` over `x`, in `LANES` independent partial sums.
#[inline(always)]
fn sum_of(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; LANES];
    let mut blocks = x.chunks_exact(LANES);
    for block in &mut blocks {
        for (s, &v) in lanes.iter_mut().zip(block) {
            *s += f(v);
        }
    }
    lanes.iter().sum::<f32>() + blocks.remainder().iter().map(|&v| f(v)).sum::<f32>()
}

/// Softmax of each `n`-value row of a block, in place.
struct SoftmaxRows<'a> {
    values: &'a mut [f32],
    n: usize,
}

impl pulp::WithSimd for SoftmaxRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        for row in self.values.chunks_exact_mut(self.n) {
            let inv = exp_in_place(row);
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
    }
}

struct SoftmaxLastDim;

/// The softmax of each `n`-value row of `values`, in place: whole rows per task, small
/// inputs (the decoder's) in one.
fn softmax_rows(values: &mut [f32], n: usize) {
    let n = n.max(1);
    let rows_per_task = (PER_TASK / n).max(1);
    values
        .par_chunks_mut(rows_per_task * n)
        .for_each(|values| vectorised(SoftmaxRows { values, n }));
}

impl CustomOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "whisper-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let mut out = values_of("whisper-softmax", storage, layout)?.to_vec();
        softmax_rows(&mut out, layout.shape().dims().last().copied().unwrap_or(1));
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// Softmax over the last dimension: the vectorised kernel for f32 on the CPU.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
        x.contiguous()?.apply_op1_no_bwd(&SoftmaxLastDim)
    } else {
        candle_nn::ops::softmax_last_dim(x)
    }
}

impl candle_core::InplaceOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "whisper-softmax-in-place"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        softmax_rows(
            values_of_mut("whisper-softmax", storage, layout)?,
            layout.shape().dims().last().copied().unwrap_or(1),
        );
        Ok(())
    }
}

/// [`softmax_last_dim`] written over `x`'s own values (no second buffer of the
/// encoder's tens of MB of scores to map, zero and fill). `x` must be held by no one
/// else (a product just computed), or they would see it change.
pub fn softmax_last_dim_in_place(x: Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 && x.is_contiguous() {
        x.inplace_op1(&SoftmaxLastDim)?;
        Ok(x)
    } else {
        softmax_last_dim(&x)
    }
}

/// Beam search's reorder of a decoder cache `[beams, blocks, rows, width]` (contiguous
/// f32 on the CPU), in place: beam `i` takes beam `sources[i]`'s first `filled` rows
/// of each block. Only the beams whose source is another are written, and only the
/// sources that are themselves overwritten are saved first, where a gather and its
/// write-back copied every beam three times. `Ok(false)` where this does not apply
/// (another device or type: the caller gathers).
pub fn reorder_beams(cache: &Tensor, sources: &[usize], filled: usize) -> Result<bool> {
    if !cache.device().is_cpu() || cache.dtype() != candle_core::DType::F32 || !cache.is_contiguous() {
        return Ok(false);
    }
    let (beams, blocks, rows, width) = cache.dims4()?;
    if sources.len() != beams || sources.iter().any(|&s| s >= beams) || filled > rows {
        candle_core::bail!(
            "whisper-reorder: sources {sources:?} and {filled} rows for a cache of {:?}",
            cache.dims()
        );
    }
    cache.inplace_op1(&Reorder {
        sources: sources.to_vec(),
        blocks,
        block: rows * width,
        filled: filled * width,
    })?;
    Ok(true)
}

struct Reorder {
    sources: Vec<usize>,
    /// Blocks per beam (heads), values per block, values filled at the start of each.
    blocks: usize,
    block: usize,
    filled: usize,
}

impl Reorder {
    /// The filled part of each block of beam `beam`: `blocks` ranges of `values`.
    fn ranges(&self, beam: usize) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        (0..self.blocks).map(move |b| {
            let start = (beam * self.blocks + b) * self.block;
            start..start + self.filled
        })
    }
}

impl candle_core::InplaceOp1 for Reorder {
    fn name(&self) -> &'static str {
        "whisper-reorder"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let values = values_of_mut("whisper-reorder", storage, layout)?;
        let moved = |i: &usize| self.sources[*i] != *i;
        let written: Vec<usize> = (0..self.sources.len()).filter(moved).collect();
        // Sources about to be overwritten, saved first (each once).
        let mut saved: Vec<(usize, Vec<f32>)> = Vec::new();
        for &i in &written {
            let source = self.sources[i];
            if moved(&source) && !saved.iter().any(|(s, _)| *s == source) {
                let mut copy = Vec::with_capacity(self.blocks * self.filled);
                for range in self.ranges(source) {
                    copy.extend_from_slice(&values[range]);
                }
                saved.push((source, copy));
            }
        }
        for &i in &written {
            let source = self.sources[i];
            match saved.iter().find(|(s, _)| *s == source) {
                Some((_, copy)) => {
                    for (range, part) in self.ranges(i).zip(copy.chunks_exact(self.filled.max(1))) {
                        values[range].copy_from_slice(part);
                    }
                }
                // A source that keeps its own rows is never written: copy straight.
                None => {
                    for (to, from) in self.ranges(i).zip(self.ranges(source)) {
                        values.copy_within(from, to.start);
                    }
                }
            }
        }
        Ok(())
    }
}

struct LogSumExp<'a>(&'a [f32]);

impl pulp::WithSimd for LogSumExp<'_> {
    type Output = f32;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> f32 {
        let max = max_of(self.0);
        if max == f32::NEG_INFINITY {
            return max;
        }
        max + sum_of(self.0, |v| exp(v - max)).ln()
    }
}

/// `log(Σ e^x)`; −∞ when every value is −∞.
pub fn logsumexp(x: &[f32]) -> f32 {
    vectorised(LogSumExp(x))
}

/// `log_softmax` of a row of logits.
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let lse = logsumexp(logits);
    logits.iter().map(|&l| l - lse).collect()
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing test should stop right there")]
mod tests {
    use super::*;

    #[test]
    fn beams_reorder_in_place_as_a_gather_does() {
        let (beams, heads, ctx, width) = (5, 2, 6, 4);
        let cache = Tensor::arange(0f32, (beams * heads * ctx * width) as f32, &candle_core::Device::Cpu)
            .unwrap()
            .reshape((beams, heads, ctx, width))
            .unwrap();
        // A swap, a source copied twice, one kept, one overwritten after it is read.
        for sources in [[1, 0, 2, 3, 4], [3, 3, 0, 3, 2], [0, 1, 2, 3, 4], [4, 4, 4, 4, 4]] {
            let filled = 4;
            let index = Tensor::new(sources.map(|s| s as u32).as_slice(), &candle_core::Device::Cpu).unwrap();
            let gathered = cache.index_select(&index, 0).unwrap();
            let ours = cache.copy().unwrap();
            assert!(reorder_beams(&ours, &sources, filled).unwrap());
            let part = |t: &Tensor, start: usize, len: usize| {
                t.narrow(2, start, len)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            };
            assert_eq!(part(&ours, 0, filled), part(&gathered, 0, filled), "{sources:?}");
            // The rows past `filled` are left as they were.
            assert_eq!(
                part(&ours, filled, ctx - filled),
                part(&cache, filled, ctx - filled),
                "{sources:?}"
            );
        }
        assert!(reorder_beams(&cache, &[0, 1], 1).is_err(), "a source per beam");
        assert!(reorder_beams(&cache, &[5, 0, 1, 2, 3], 1).is_err(), "no beam 5");
        assert!(
            reorder_beams(&cache, &[0, 1, 2, 3, 4], ctx + 1).is_err(),
            "more rows than held"
        );
        let half = cache.to_dtype(candle_core::DType::F16).unwrap();
        assert!(
            !reorder_beams(&half, &[1, 0, 2, 3, 4], 1).unwrap(),
            "f16 is gathered by the caller"
        );
    }

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
    fn exp_is_within_two_ulp_of_libm() {
        let mut worst = 0f32;
        for i in -870_000..=880_000 {
            let x = i as f32 / 10_000.0;
            let exact = f64::from(x).exp();
            let ulp = (exact as f32).to_bits();
            let got = exp(x).to_bits();
            if exact > f64::from(f32::MIN_POSITIVE) {
                worst = worst.max(got.abs_diff(ulp) as f32);
            }
        }
        assert!(worst <= 2.0, "{worst} ulp");
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn logsumexp_and_log_softmax_match_the_definition() {
        let x: Vec<f32> = (0..51_867).map(|i| ((i * 37) % 1001) as f32 / 50.0 - 10.0).collect();
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exact = f64::from(max) + x.iter().map(|&v| f64::from(v - max).exp()).sum::<f64>().ln();
        assert!(
            (f64::from(logsumexp(&x)) - exact).abs() < 1e-4,
            "{} vs {exact}",
            logsumexp(&x)
        );
        assert_eq!(logsumexp(&[f32::NEG_INFINITY; 3]), f32::NEG_INFINITY);
        let mut masked = x.clone();
        masked[..100].fill(f32::NEG_INFINITY);
        let probs: f64 = log_softmax(&masked).iter().map(|&l| f64::from(l).exp()).sum();
        assert!((probs - 1.0).abs() < 1e-4, "{probs}");
    }

    /// Our softmax against candle's on random rows of `shape`, within `rel` of the larger
    /// of |candle's| and `floor`.
    fn softmax_matches_candle(shape: (usize, usize, usize), rel: f32, floor: f32) {
        let x = Tensor::randn(0f32, 3.0, shape, &candle_core::Device::Cpu).unwrap();
        let values = |t: Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
        let ours = values(softmax_last_dim(&x).unwrap());
        let theirs = values(candle_nn::ops::softmax_last_dim(&x).unwrap());
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).abs() <= rel * b.abs().max(floor), "{a} vs {b}");
        }
    }

    #[test]
    fn large_softmax_matches_candle() {
        // Rows of 1500: the sums differ in the order of their additions.
        softmax_matches_candle((6, 300, 1500), 1e-5, 1e-3);
    }

    #[test]
    fn small_softmax_matches_candle() {
        softmax_matches_candle((6, 1, 100), 1e-6, 1.0);
    }

    #[test]
    fn softmax_in_place_overwrites_only_its_own_tensor() {
        let x = Tensor::randn(0f32, 3.0, (2, 5, 300), &candle_core::Device::Cpu).unwrap();
        let before = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let copy = (&x * 1.0).unwrap();
        let expected = softmax_last_dim(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let got = softmax_last_dim_in_place(copy).unwrap();
        assert_eq!(got.flatten_all().unwrap().to_vec1::<f32>().unwrap(), expected);
        assert_eq!(x.flatten_all().unwrap().to_vec1::<f32>().unwrap(), before);
        // A strided view is not written over: it gets a new tensor.
        let t = x.transpose(1, 2).unwrap();
        let strided = softmax_last_dim_in_place(t.clone()).unwrap();
        assert_eq!(strided.dims(), t.dims());
        assert_eq!(x.flatten_all().unwrap().to_vec1::<f32>().unwrap(), before);
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
