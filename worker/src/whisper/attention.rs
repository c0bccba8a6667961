//! Attention on the CPU in one pass per few query rows: scores, softmax and the
//! weighted sum of values while the rows' scores are still in L1.
//!
//! Through candle the encoder's scores of a layer are three matrices of `heads × 1500
//! × 1500` values (product, softmax, product): tens of MB written and read back, more
//! than half the encoder's time on one core. Here a few query rows at a time get their
//! scores against every key (a few tens of KB), and the keys and values of one head
//! (under 1 MB) stay in L2 while a block of queries passes over them. The decoder's
//! cross-attention uses the same kernel over the audio's keys and values, laid out
//! once per window ([`HeadsKv`]) instead of read through a transposed view per token.
//!
//! Every Whisper size has 64-wide heads; other widths take candle's path.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use pulp::Simd;
use rayon::prelude::*;

use super::ops::{exp_in_place, prefetch, rows_of, vectorised};

/// Width of a head, and of the tiles the kernel computes: 64 keys of a score row, or
/// the 64 values of an output row.
pub const HEAD_DIM: usize = 64;

/// How many 64-wide rows of keys or values ahead of the kernel they are fetched.
const PREFETCH_AHEAD: usize = 16;

/// Query rows per parallel task at most: a task reads its head's keys and values once.
const MAX_ROWS_PER_TASK: usize = 256;

/// The keys and values of every head of one attention, laid out for the kernel: per
/// head the keys transposed in tiles, `[padded / 64][64 dims][64 keys]` (a tile's keys
/// side by side, as vectors load them; zero past `keys`), then the values, `[keys][64]`.
/// Gathered out of the projection's rows, whose stride maps a head's rows onto a few
/// cache sets. Held in f32, or in bf16 ([`Stored`]): a decoder's step reads every
/// layer's audio keys and values (36 MB for base in f32), which bounds its speed.
pub struct HeadsKv {
    data: Held,
    heads: usize,
    keys: usize,
    padded: usize,
}

enum Held {
    F32(Vec<f32>),
    Bf16(Vec<u32>),
}

/// One head's tiled keys and values.
enum Head<'a> {
    F32(&'a [f32], &'a [f32]),
    Bf16(&'a [u32], &'a [u32]),
}

/// How a head's keys and values are held: f32, or bf16 in pairs (a `u32` holding
/// values `c` and `c + 32` of a 64-wide row in its low and high half), which a shift
/// or a mask turns back into f32 vectors in the row's order, whatever the lanes.
trait Stored: Copy + Send + Sync + 'static {
    /// Items per 64-wide row.
    const PER_ROW: usize;

    /// The row's 64 values as `NV` vectors (`NV × lanes = 64`).
    fn load<S: Simd, const NV: usize>(simd: S, row: &[Self]) -> [S::f32s; NV];
}

impl Stored for f32 {
    const PER_ROW: usize = HEAD_DIM;

    #[inline(always)]
    fn load<S: Simd, const NV: usize>(simd: S, row: &[f32]) -> [S::f32s; NV] {
        match <&[S::f32s; NV]>::try_from(S::as_simd_f32s(row).0) {
            Ok(vectors) => *vectors,
            Err(_) => [simd.splat_f32s(0.0); NV],
        }
    }
}

impl Stored for u32 {
    const PER_ROW: usize = HEAD_DIM / 2;

    #[inline(always)]
    fn load<S: Simd, const NV: usize>(simd: S, row: &[u32]) -> [S::f32s; NV] {
        let (pairs, _) = S::as_simd_u32s(row);
        let high = simd.splat_u32s(0xffff_0000);
        let shift = simd.splat_u32s(16);
        let half = NV / 2;
        // A loop, not `array::from_fn`: its closure is compiled without the CPU's
        // features, and each intrinsic inside becomes a function call.
        let mut vectors = [simd.splat_f32s(0.0); NV];
        for (g, &pair) in pairs.iter().take(half).enumerate() {
            vectors[g] = pulp::bytemuck::cast(simd.wrapping_dyn_shl_u32s(pair, shift));
            vectors[g + half] = pulp::bytemuck::cast(simd.and_u32s(pair, high));
        }
        vectors
    }
}

/// Rows of 64 f32 values as bf16 pairs ([`Stored`] for `u32`), rounded to nearest even.
fn to_bf16_pairs(values: &[f32]) -> Vec<u32> {
    let bf16 = |v: f32| {
        let bits = v.to_bits();
        if v.is_nan() {
            // Rounding could carry a NaN's mantissa into the sign (or overflow); a
            // quiet NaN stays one.
            return (bits >> 16) | 0x40;
        }
        (bits + 0x7fff + ((bits >> 16) & 1)) >> 16
    };
    values
        .chunks_exact(HEAD_DIM)
        .flat_map(|row| {
            let (low, high) = row.split_at(HEAD_DIM / 2);
            low.iter().zip(high).map(move |(&l, &h)| (bf16(h) << 16) | bf16(l))
        })
        .collect()
}

impl HeadsKv {
    /// From `keys` rows of `stride` floats holding the keys at column `k_at` and the
    /// values at `v_at`, each `heads × 64` wide.
    fn gather(rows: &[f32], keys: usize, heads: usize, stride: usize, k_at: usize, v_at: usize) -> HeadsKv {
        let padded = keys.next_multiple_of(HEAD_DIM);
        let per_head = (padded + keys) * HEAD_DIM;
        let mut data = vec![0f32; heads * per_head];
        if per_head > 0 {
            data.par_chunks_mut(per_head).enumerate().for_each(|(head, data)| {
                let (kt, v) = data.split_at_mut(padded * HEAD_DIM);
                let rows = rows.chunks_exact(stride).take(keys);
                for ((j, row), v) in rows.enumerate().zip(v.chunks_exact_mut(HEAD_DIM)) {
                    let tile = &mut kt[(j / HEAD_DIM) * HEAD_DIM * HEAD_DIM + j % HEAD_DIM..];
                    let k = &row[k_at + head * HEAD_DIM..][..HEAD_DIM];
                    for (c, &value) in k.iter().enumerate() {
                        tile[c * HEAD_DIM] = value;
                    }
                    v.copy_from_slice(&row[v_at + head * HEAD_DIM..][..HEAD_DIM]);
                }
            });
        }
        HeadsKv {
            data: Held::F32(data),
            heads,
            keys,
            padded,
        }
    }

    /// The keys and values of `kv`, `[1, keys, 2·heads·64]` (keys then values, as the
    /// cross-attention's fused projection leaves them), in bf16 with `bf16`; `None`
    /// where the kernel does not apply (off the CPU, not f32, heads not 64 wide).
    pub fn of(kv: &Tensor, heads: usize, bf16: bool) -> Result<Option<HeadsKv>> {
        let (b, keys, n) = kv.dims3()?;
        let d = heads * HEAD_DIM;
        if b != 1 || n != 2 * d || !applies(kv) {
            return Ok(None);
        }
        let data = kv.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let kv = HeadsKv::gather(&data, keys, heads, 2 * d, 0, d);
        Ok(Some(if bf16 { kv.in_bf16() } else { kv }))
    }

    /// The same keys and values held in bf16 pairs.
    fn in_bf16(self) -> HeadsKv {
        let data = match self.data {
            Held::F32(values) => Held::Bf16(to_bf16_pairs(&values)),
            held => held,
        };
        HeadsKv { data, ..self }
    }

    /// Tiled keys and values of `head`.
    fn head(&self, head: usize) -> Head<'_> {
        fn split<'a, T: Stored>(data: &'a [T], kv: &HeadsKv, head: usize) -> (&'a [T], &'a [T]) {
            let per_head = (kv.padded + kv.keys) * T::PER_ROW;
            data[head * per_head..][..per_head].split_at(kv.padded * T::PER_ROW)
        }
        match &self.data {
            Held::F32(data) => {
                let (kt, values) = split(data, self, head);
                Head::F32(kt, values)
            }
            Held::Bf16(data) => {
                let (kt, values) = split(data, self, head);
                Head::Bf16(kt, values)
            }
        }
    }
}

/// Whether the kernel computes for `x`'s device and type.
fn applies(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == candle_core::DType::F32
}

struct SelfAttention {
    heads: usize,
}

impl CustomOp1 for SelfAttention {
    fn name(&self) -> &'static str {
        "whisper-self-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let d = self.heads * HEAD_DIM;
        let n = 3 * d;
        let (values, shape) = rows_of("whisper-self-attention", storage, layout, n, d)?;
        let (b, t, _) = shape.dims3()?;
        let mut out = Vec::with_capacity(b * t * d);
        if t > 0 {
            for item in values.chunks_exact(t * n) {
                let kv = HeadsKv::gather(item, t, self.heads, n, d, 2 * d);
                out.extend(attend(item, n, t, &kv, None));
            }
        }
        Ok((CpuStorage::F32(out), shape))
    }
}

/// Self-attention of `qkv`, `[b, t, 3·heads·64]` (queries, keys and values side by side,
/// the queries already scaled) → `[b, t, heads·64]`, heads side by side. `None` where
/// this kernel does not apply (off the CPU, not f32, heads not 64 wide).
pub fn self_attention(qkv: &Tensor, heads: usize) -> Result<Option<Tensor>> {
    let (_, _, n) = qkv.dims3()?;
    if !applies(qkv) || n != 3 * heads * HEAD_DIM {
        return Ok(None);
    }
    Ok(Some(qkv.contiguous()?.apply_op1_no_bwd(&SelfAttention { heads })?))
}

/// Attention of the queries `q`, `[b, t, heads·64]` (already scaled), over `kv` →
/// `[b, t, heads·64]`; with `keep_scores`, also the scaled scores before the softmax,
/// `[1, heads, b·t, keys]`.
pub fn cross_attention(q: &Tensor, kv: &HeadsKv, keep_scores: bool) -> Result<(Tensor, Option<Tensor>)> {
    let (b, t, d) = q.dims3()?;
    if d != kv.heads * HEAD_DIM {
        candle_core::bail!(
            "whisper-cross-attention: {d} columns are not {} heads × {HEAD_DIM}",
            kv.heads
        );
    }
    let queries = q.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
    let rows = b * t;
    let mut scores = keep_scores.then(|| vec![0f32; kv.heads * rows * kv.keys]);
    let out = attend(&queries, d, rows, kv, scores.as_deref_mut());
    let out = Tensor::from_vec(out, (b, t, d), q.device())?;
    let scores = scores
        .map(|s| Tensor::from_vec(s, (1, kv.heads, rows, kv.keys), q.device()))
        .transpose()?;
    Ok((out, scores))
}

/// `softmax(q_i·Kᵀ)·V` of every head for the `rows` query rows of `queries` (`stride`
/// floats apart, heads side by side from column 0) → `[rows][heads·64]`. `scores`, when
/// given, receives the scores before the softmax, `[heads][rows][keys]`.
fn attend(queries: &[f32], stride: usize, rows: usize, kv: &HeadsKv, scores: Option<&mut [f32]>) -> Vec<f32> {
    let heads = kv.heads;
    let d = heads * HEAD_DIM;
    if rows == 0 || heads == 0 || kv.keys == 0 {
        return vec![0f32; rows * d];
    }
    let threads = rayon::current_num_threads().max(1);
    // Enough tasks for every thread counting the heads; whole blocks of 4 rows.
    let rows_per_task = rows
        .div_ceil((2 * threads).div_ceil(heads))
        .clamp(1, MAX_ROWS_PER_TASK)
        .next_multiple_of(4);
    let head_scores: Vec<Option<&mut [f32]>> = match scores {
        Some(s) => s.chunks_mut(rows * kv.keys).map(Some).collect(),
        None => (0..heads).map(|_| None).collect(),
    };
    // Head-major while computing (each task's rows contiguous), rows-major after.
    let mut by_head = vec![0f32; heads * rows * HEAD_DIM];
    by_head
        .par_chunks_mut(rows * HEAD_DIM)
        .zip(head_scores)
        .enumerate()
        .for_each(|(head, (out, scores))| {
            let task_scores: Vec<Option<&mut [f32]>> = match scores {
                Some(s) => s.chunks_mut(rows_per_task * kv.keys).map(Some).collect(),
                None => (0..rows.div_ceil(rows_per_task)).map(|_| None).collect(),
            };
            out.par_chunks_mut(rows_per_task * HEAD_DIM)
                .zip(task_scores)
                .enumerate()
                .for_each(|(task, (out, scores))| {
                    let task = Task {
                        queries,
                        stride,
                        head,
                        first: task * rows_per_task,
                        keys: kv.keys,
                        out,
                        scores,
                    };
                    match kv.head(head) {
                        Head::F32(kt, values) => vectorised(Rows { task, kt, values }),
                        Head::Bf16(kt, values) => vectorised(Rows { task, kt, values }),
                    }
                });
        });
    let mut out = vec![0f32; rows * d];
    out.par_chunks_mut(d).enumerate().for_each(|(i, row)| {
        for (head, dst) in row.chunks_exact_mut(HEAD_DIM).enumerate() {
            dst.copy_from_slice(&by_head[(head * rows + i) * HEAD_DIM..][..HEAD_DIM]);
        }
    });
    out
}

/// One task: the query rows `first..` (as many as `out` holds, 64 values each) of one
/// head.
struct Task<'a> {
    queries: &'a [f32],
    stride: usize,
    head: usize,
    first: usize,
    keys: usize,
    out: &'a mut [f32],
    /// The rows' scores before the softmax, when kept.
    scores: Option<&'a mut [f32]>,
}

/// A [`Task`] with its head's keys in tiles and its values ([`HeadsKv`]), as held.
struct Rows<'a, T> {
    task: Task<'a>,
    kt: &'a [T],
    values: &'a [T],
}

impl<T: Stored> pulp::WithSimd for Rows<'_, T> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        // Rows × vectors of accumulators that fit the registers. A beam search's 5 or
        // 6 rows (one per beam) go in one block on AVX-512's 32 registers: blocks of 4
        // would read the audio's keys and values twice a step.
        let rows = self.task.out.len() / HEAD_DIM;
        match S::F32_LANES {
            16 if rows == 5 => self.run::<S, 5, 4>(simd),
            16 if rows == 6 => self.run::<S, 6, 4>(simd),
            16 => self.run::<S, 4, 4>(simd),
            8 => self.run::<S, 2, 8>(simd),
            4 => self.run::<S, 1, 16>(simd),
            _ => self.run::<pulp::Scalar, 1, HEAD_DIM>(pulp::Scalar::new()),
        }
    }
}

impl<T: Stored> Rows<'_, T> {
    /// `R` query rows at a time, each tile `NV` vectors wide (`NV × lanes = 64`).
    #[inline(always)]
    fn run<S: Simd, const R: usize, const NV: usize>(self, simd: S) {
        if NV * S::F32_LANES != HEAD_DIM {
            return;
        }
        let Rows {
            task:
                Task {
                    queries,
                    stride,
                    head,
                    first,
                    keys,
                    out,
                    mut scores,
                },
            kt,
            values,
        } = self;
        let padded = kt.len() / T::PER_ROW;
        let rows = out.len() / HEAD_DIM;
        let mut block_scores = vec![0f32; R * padded];
        let mut spare = [0f32; HEAD_DIM];
        for block in (0..rows).step_by(R) {
            let live = R.min(rows - block);
            if live == 1 && R > 1 {
                // A decoder's token: one row, its products split to keep R
                // accumulators busy instead of computing R − 1 copies of it.
                let i = first + block;
                one_row::<S, NV, T>(
                    simd,
                    &queries[i * stride + head * HEAD_DIM..][..HEAD_DIM],
                    (kt, values, keys),
                    &mut block_scores[..padded],
                    scores.as_deref_mut().map(|s| &mut s[block * keys..][..keys]),
                    &mut out[block * HEAD_DIM..][..HEAD_DIM],
                );
                continue;
            }
            // Rows past the end repeat the last one; their results go to `spare`.
            let q: [&[f32]; R] = std::array::from_fn(|r| {
                let i = first + block + r.min(live - 1);
                &queries[i * stride + head * HEAD_DIM..][..HEAD_DIM]
            });
            for tile in (0..padded).step_by(HEAD_DIM) {
                let acc = tile_product::<S, R, NV, T>(simd, &q, &kt[tile * T::PER_ROW..], HEAD_DIM);
                for (r, acc) in acc.iter().enumerate() {
                    store::<S, NV>(simd, &mut block_scores[r * padded + tile..][..HEAD_DIM], acc, 1.0);
                }
            }
            if let Some(scores) = scores.as_deref_mut() {
                for (r, dst) in scores[block * keys..].chunks_exact_mut(keys).take(live).enumerate() {
                    dst.copy_from_slice(&block_scores[r * padded..][..keys]);
                }
            }
            let mut inverse_sums = [0f32; R];
            for (r, inverse) in inverse_sums.iter_mut().enumerate() {
                *inverse = exp_in_place(&mut block_scores[r * padded..][..keys]);
            }
            let weights: [&[f32]; R] = std::array::from_fn(|r| &block_scores[r * padded..][..keys]);
            let acc = tile_product::<S, R, NV, T>(simd, &weights, values, keys);
            let mut dst = out[block * HEAD_DIM..].chunks_exact_mut(HEAD_DIM);
            for (r, acc) in acc.iter().enumerate() {
                let target = match dst.next() {
                    Some(row) if r < live => row,
                    _ => &mut spare[..],
                };
                store::<S, NV>(simd, target, acc, inverse_sums[r]);
            }
        }
    }
}

/// One query row `q` of a head over its tiled keys and values `(kt, values, keys)`:
/// the key tiles four at a time, the values in four interleaved partial sums, so that
/// four independent accumulator sets keep the FMA units busy. `row` is scratch for
/// the scores (`kt.len() / 64` values); `scores` receives them before the softmax.
#[inline(always)]
fn one_row<S: Simd, const NV: usize, T: Stored>(
    simd: S,
    q: &[f32],
    (kt, values, keys): (&[T], &[T], usize),
    row: &mut [f32],
    scores: Option<&mut [f32]>,
    out: &mut [f32],
) {
    const SETS: usize = 4;
    let tile = HEAD_DIM * T::PER_ROW;
    let mut groups = kt.chunks_exact(SETS * tile);
    let mut at = 0;
    for group in &mut groups {
        let b: [&[T]; SETS] = std::array::from_fn(|g| &group[g * tile..]);
        let acc = tile_product_each::<S, SETS, NV, T>(simd, &[q; SETS], &b, HEAD_DIM);
        for acc in &acc {
            store::<S, NV>(simd, &mut row[at..][..HEAD_DIM], acc, 1.0);
            at += HEAD_DIM;
        }
    }
    for tile in groups.remainder().chunks_exact(tile) {
        let [acc] = tile_product::<S, 1, NV, T>(simd, &[q], tile, HEAD_DIM);
        store::<S, NV>(simd, &mut row[at..][..HEAD_DIM], &acc, 1.0);
        at += HEAD_DIM;
    }
    if let Some(scores) = scores {
        scores.copy_from_slice(&row[..keys]);
    }
    let inverse = exp_in_place(&mut row[..keys]);
    let part = keys / SETS;
    let a: [&[f32]; SETS] = std::array::from_fn(|g| &row[g * part..][..part]);
    let b: [&[T]; SETS] = std::array::from_fn(|g| &values[g * part * T::PER_ROW..]);
    let acc = tile_product_each::<S, SETS, NV, T>(simd, &a, &b, part);
    let [mut sum] = tile_product::<S, 1, NV, T>(
        simd,
        &[&row[SETS * part..keys]],
        &values[SETS * part * T::PER_ROW..],
        keys - SETS * part,
    );
    for acc in &acc {
        for (sum, &acc) in sum.iter_mut().zip(acc) {
            *sum = simd.add_f32s(*sum, acc);
        }
    }
    store::<S, NV>(simd, out, &sum, inverse);
}

/// [`tile_product`] with a `b` of its own for each row.
#[inline(always)]
fn tile_product_each<S: Simd, const R: usize, const NV: usize, T: Stored>(
    simd: S,
    a: &[&[f32]; R],
    b: &[&[T]; R],
    n: usize,
) -> [[S::f32s; NV]; R] {
    let mut acc = [[simd.splat_f32s(0.0); NV]; R];
    let a: [&[f32]; R] = std::array::from_fn(|r| &a[r][..n]);
    let b: [&[T]; R] = std::array::from_fn(|r| &b[r][..n * T::PER_ROW]);
    for i in 0..n {
        for ((acc, a), b) in acc.iter_mut().zip(&a).zip(&b) {
            let row = T::load::<S, NV>(simd, &b[i * T::PER_ROW..][..T::PER_ROW]);
            let x = simd.splat_f32s(a[i]);
            for (acc, y) in acc.iter_mut().zip(row) {
                *acc = simd.mul_add_e_f32s(x, y, *acc);
            }
        }
    }
    acc
}

/// `Σᵢ a[r][i] · b[i·64..][..64]` for `i < n`, each of the `R` rows as `NV` vectors:
/// the one product both halves of attention are made of (queries × a tile of
/// transposed keys, weights × values). `b`'s rows as [`Stored`].
#[inline(always)]
fn tile_product<S: Simd, const R: usize, const NV: usize, T: Stored>(
    simd: S,
    a: &[&[f32]; R],
    b: &[T],
    n: usize,
) -> [[S::f32s; NV]; R] {
    let mut acc = [[simd.splat_f32s(0.0); NV]; R];
    let a: [&[f32]; R] = std::array::from_fn(|r| &a[r][..n]);
    for (i, row) in b.chunks_exact(T::PER_ROW).take(n).enumerate() {
        // The rows a few ahead, a cache line at a time (a row is one to four).
        let ahead = row.as_ptr().wrapping_add(PREFETCH_AHEAD * T::PER_ROW);
        for line in (0..T::PER_ROW).step_by(64 / size_of::<T>()) {
            prefetch(ahead.wrapping_add(line));
        }
        let row = T::load::<S, NV>(simd, row);
        for (acc, a) in acc.iter_mut().zip(&a) {
            let x = simd.splat_f32s(a[i]);
            for (acc, &y) in acc.iter_mut().zip(&row) {
                *acc = simd.mul_add_e_f32s(x, y, *acc);
            }
        }
    }
    acc
}

/// `dst = acc · scale`.
#[inline(always)]
fn store<S: Simd, const NV: usize>(simd: S, dst: &mut [f32], acc: &[S::f32s; NV], scale: f32) {
    let scale = simd.splat_f32s(scale);
    let (dst, _) = S::as_mut_simd_f32s(dst);
    for (dst, &acc) in dst.iter_mut().zip(acc) {
        *dst = simd.mul_f32s(acc, scale);
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing test should stop right there")]
mod tests {
    use candle_core::{DType, Device, Tensor};

    use super::*;

    /// `[b, t, n·heads·64]` → n tensors `[b, heads, t, 64]`.
    fn heads_of(x: &Tensor, n: usize, heads: usize) -> Vec<Tensor> {
        let (b, t, _) = x.dims3().unwrap();
        let parts = x
            .reshape((b, t, n, heads, HEAD_DIM))
            .unwrap()
            .permute((2, 0, 3, 1, 4))
            .unwrap()
            .contiguous()
            .unwrap();
        (0..n).map(|i| parts.get(i).unwrap()).collect()
    }

    /// Scores, and `softmax(scores)·v` as `[b, t, heads·64]`, as candle computes them.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor) -> (Tensor, Tensor) {
        let w = q.matmul(&k.t().unwrap()).unwrap();
        let (b, heads, t, _) = q.dims4().unwrap();
        let o = candle_nn::ops::softmax_last_dim(&w)
            .unwrap()
            .matmul(v)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b, t, heads * HEAD_DIM))
            .unwrap();
        (w, o)
    }

    fn largest_difference(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn self_attention_matches_softmax_of_products_for_every_row_and_head() {
        // A partial key tile and a partial block of rows; 2 batch items; one frame.
        for (b, t, heads) in [(2, 70, 3), (1, 1, 1), (1, 129, 2)] {
            let qkv = Tensor::randn(0f32, 1.0, (b, t, 3 * heads * HEAD_DIM), &Device::Cpu).unwrap();
            let got = self_attention(&qkv, heads).unwrap().unwrap();
            let parts = heads_of(&qkv, 3, heads);
            let (_, want) = reference(&parts[0], &parts[1], &parts[2]);
            let diff = largest_difference(&got, &want);
            assert!(diff < 1e-5, "b={b} t={t} heads={heads}: off by {diff}");
        }
    }

    #[test]
    fn cross_attention_matches_candle_and_keeps_the_scores_asked_for() {
        // Five key tiles (one group of four and one more); a tail of one past a
        // multiple of four values.
        let (heads, frames) = (3, 301);
        let audio_kv = Tensor::randn(0f32, 1.0, (1, frames, 2 * heads * HEAD_DIM), &Device::Cpu).unwrap();
        for bf16 in [false, true] {
            let kv = HeadsKv::of(&audio_kv, heads, bf16).unwrap().unwrap();
            // Held in bf16, the keys and values are candle's bf16 rounding of them.
            let exact = if bf16 {
                audio_kv.to_dtype(DType::BF16).unwrap().to_dtype(DType::F32).unwrap()
            } else {
                audio_kv.clone()
            };
            let parts = heads_of(&exact, 2, heads);
            // One token (one row), five and six beams of one token (one block of
            // rows on AVX-512), and one beam of seven tokens (blocks of four and three).
            for (b, t) in [(1, 1), (5, 1), (6, 1), (1, 7)] {
                let q = Tensor::randn(0f32, 1.0, (b, t, heads * HEAD_DIM), &Device::Cpu).unwrap();
                // The beams' queries are rows of one batch over the one audio.
                let q_heads = heads_of(&q.reshape((1, b * t, heads * HEAD_DIM)).unwrap(), 1, heads);
                let (want_scores, want) = reference(&q_heads[0], &parts[0], &parts[1]);
                let (got, scores) = cross_attention(&q, &kv, true).unwrap();
                let diff = largest_difference(&got.reshape((1, b * t, heads * HEAD_DIM)).unwrap(), &want);
                assert!(diff < 1e-5, "bf16 {bf16}, b={b} t={t}: off by {diff}");
                let diff = largest_difference(&scores.unwrap(), &want_scores);
                assert!(diff < 1e-4, "bf16 {bf16}, b={b} t={t}: scores off by {diff}");
                let (unscored, none) = cross_attention(&q, &kv, false).unwrap();
                assert!(none.is_none());
                assert_eq!(largest_difference(&unscored, &got), 0.0);
            }
        }
    }

    #[test]
    fn bf16_pairs_round_to_nearest_even_and_survive_odd_values() {
        let mut row = vec![0f32; HEAD_DIM];
        // 1 + 2⁻⁸ is a tie (rounds down to even 1), 1 + 3·2⁻⁸ rounds up to 1 + 2⁻⁶.
        row[0] = 1.0 + 1.0 / 256.0;
        row[32] = 1.0 + 3.0 / 256.0;
        row[1] = f32::from_bits(0xffff_ffff);
        row[33] = f32::NEG_INFINITY;
        let pairs = to_bf16_pairs(&row);
        let back = |bits: u32| f32::from_bits(bits << 16);
        assert_eq!(back(pairs[0] & 0xffff), 1.0);
        assert_eq!(back(pairs[0] >> 16), 1.0 + 1.0 / 64.0);
        assert!(back(pairs[1] & 0xffff).is_nan());
        assert_eq!(back(pairs[1] >> 16), f32::NEG_INFINITY);
    }

    #[test]
    fn no_frames_make_no_rows() {
        let empty = Tensor::zeros((1, 0, 3 * HEAD_DIM), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(self_attention(&empty, 1).unwrap().unwrap().dims(), &[1, 0, HEAD_DIM]);
    }

    #[test]
    fn declines_what_it_does_not_compute() {
        let narrow = Tensor::zeros((1, 4, 3 * 2 * 32), DType::F32, &Device::Cpu).unwrap();
        assert!(self_attention(&narrow, 2).unwrap().is_none());
        let half = Tensor::zeros((1, 4, 3 * HEAD_DIM), DType::F16, &Device::Cpu).unwrap();
        assert!(self_attention(&half, 1).unwrap().is_none());
        let kv = Tensor::zeros((1, 4, 2 * HEAD_DIM), DType::F16, &Device::Cpu).unwrap();
        assert!(HeadsKv::of(&kv, 1, false).unwrap().is_none());
        let q = Tensor::zeros((1, 1, 2 * HEAD_DIM), DType::F32, &Device::Cpu).unwrap();
        let kv = Tensor::zeros((1, 4, 2 * HEAD_DIM), DType::F32, &Device::Cpu).unwrap();
        let kv = HeadsKv::of(&kv, 1, false).unwrap().unwrap();
        assert!(
            cross_attention(&q, &kv, false).is_err(),
            "two heads of queries over one head of keys"
        );
    }
}
