//! Every GPU kernel against its CPU twin on odd shapes. Runs on whatever adapter wgpu finds
//! (lavapipe in CI) and fails, never skips, when there is none.

mod common;

use common::gpu;
use common::tol::GPU_VS_CPU_REL;
use qwen_omni::cpu;
use qwen_omni::cpu::attention::AttnShape;
use qwen_omni::gpu::{GpuBuffer, GpuContext, GpuMatrix, GpuOptions, Kernels, MatFlags, StepDims};
use qwen_omni::tensor::{DType, MatRef, f32_to_bf16};

/// Deterministic values in [-1, 1) with no structure.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut r = qwen_omni::models::sampler::Rng::new(seed);
    (0..n).map(|_| r.next_f32() * 2.0 - 1.0).collect()
}

fn encode(dtype: DType, v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|&x| match dtype {
            DType::BF16 => f32_to_bf16(x).to_le_bytes().to_vec(),
            _ => half::f16::from_f32(x).to_le_bytes().to_vec(),
        })
        .collect()
}

fn rel(a: &[f32], b: &[f32]) -> f32 {
    common::rel_err(a, b)
}

fn check(what: &str, gpu: &[f32], cpu: &[f32]) {
    let e = rel(gpu, cpu);
    assert!(
        e <= GPU_VS_CPU_REL,
        "{what}: GPU vs CPU relative error {e:.2e} > {GPU_VS_CPU_REL:.0e}"
    );
}

#[test]
fn matvec_matches_cpu_for_bf16_and_f16_odd_shapes_and_chunks() {
    let ctx = gpu();
    let mut k = Kernels::new(&ctx);
    // every rows-per-subgroup choice (the tail of a chunk repeats its last row)
    for (rows, dtype) in (1..=4).flat_map(|r| [(r, DType::BF16), (r, DType::F16)]) {
        k.tuning.matvec_rows = rows;
        k.tuning.matvec_wg = [256, 64, 128, 256][rows as usize - 1];
        for &(n, kk, chunk) in &[
            (1usize, 2usize, 100usize),
            (13, 7, 5),
            (67, 45, 16),
            (33, 64, 8),
            (300, 256, 1000),
            (9, 1000, 4),
        ] {
            let w = encode(dtype, &values(n * kk, 1));
            let x = values(kk + 4, 2);
            let x_off = if kk % 8 == 0 { 4 } else { 3 };
            let xs = &x[x_off..x_off + kk];
            let gm = GpuMatrix::upload_chunked(&ctx, dtype, &w, n, kk, chunk, "w").unwrap();
            let gx = GpuBuffer::from_f32(&ctx, &x, "x").unwrap();
            let gy = GpuBuffer::zeros(&ctx, n + 2, "y").unwrap();
            let ops = k
                .matvec(&gm, &gx, x_off, &gy, 2, MatFlags::default())
                .unwrap();
            k.run(&ops, StepDims { t: 1, pos0: 0 }).unwrap();
            let got = gy.read_f32(&ctx, 2, n).unwrap();
            let mut want = vec![0f32; n];
            cpu::matvec(MatRef::new(dtype, &w, n, kk), xs, &mut want);
            check(
                &format!("matvec {dtype} {n}x{kk} chunk {chunk} rows {rows}"),
                &got,
                &want,
            );
        }
    }
}

#[test]
fn matmul_matches_cpu_for_odd_token_counts_and_chunks() {
    let ctx = gpu();
    let k = Kernels::new(&ctx);
    for &(t, n, kk, chunk) in &[
        (2usize, 5usize, 3usize, 100usize),
        (5, 67, 45, 30),
        (37, 70, 64, 1000),
        (70, 129, 33, 64),
        // K a multiple of 16: the vectorised tile loads, partial tiles in t and n, chunks
        (65, 200, 160, 150),
        (1, 3, 16, 2),
    ] {
        let w = encode(DType::BF16, &values(n * kk, 3));
        let x = values(t * kk, 4);
        let gm = GpuMatrix::upload_chunked(&ctx, DType::BF16, &w, n, kk, chunk, "w").unwrap();
        let gx = GpuBuffer::from_f32(&ctx, &x, "x").unwrap();
        let gy = GpuBuffer::zeros(&ctx, t * n, "y").unwrap();
        let ops = k
            .matmul(&gm, &gx, kk, &gy, n, 0, MatFlags::default())
            .unwrap();
        let got = run_read(&k, &ops, t, &gy, t * n);
        let mut want = vec![0f32; t * n];
        cpu::matmul(&x, t, MatRef::new(DType::BF16, &w, n, kk), &mut want);
        check(&format!("matmul t{t} {n}x{kk}"), &got, &want);
    }
}

/// Run `ops` for a step of `t` tokens at position 0 and read `len` floats of `out`.
fn run_read(
    k: &Kernels,
    ops: &[qwen_omni::gpu::Op],
    t: usize,
    out: &GpuBuffer,
    len: usize,
) -> Vec<f32> {
    let dims = StepDims {
        t: t as u32,
        pos0: 0,
    };
    k.run(ops, dims).unwrap();
    out.read_f32(&k.ctx, 0, len).unwrap()
}

/// Split-K (the audio encoder's short steps): K cut into slices whose partial tiles a second
/// pass sums, with the residual added (ACCUMULATE) and in chunks; the scratch caps the slices
/// (one case fits only 2). Same tolerance as the plain matmul: only the summation order moves.
#[test]
fn split_k_matmul_matches_cpu_with_accumulate_and_chunks() {
    let ctx = gpu();
    for &(t, n, kk, chunk, scratch) in &[
        (65usize, 200usize, 1280usize, 150usize, 16 * 65 * 200usize),
        (3, 130, 528, 1000, 16 * 3 * 130),
        (70, 64, 4096, 64, 2 * 70 * 64),
    ] {
        let mut k = Kernels::new(&ctx);
        let part = GpuBuffer::zeros(&ctx, scratch, "split").unwrap();
        k.split_k(&part, t);
        let w = encode(DType::BF16, &values(n * kk, 31));
        let x = values(t * kk, 32);
        let y0 = values(t * n, 33);
        let gm = GpuMatrix::upload_chunked(&ctx, DType::BF16, &w, n, kk, chunk, "w").unwrap();
        let gx = GpuBuffer::from_f32(&ctx, &x, "x").unwrap();
        let gy = GpuBuffer::from_f32(&ctx, &y0, "y").unwrap();
        let acc = MatFlags {
            accumulate: true,
            ..Default::default()
        };
        let ops = k.matmul(&gm, &gx, kk, &gy, n, 0, acc).unwrap();
        assert!(
            ops.iter().any(|o| o.name == "matmul_reduce"),
            "t{t} {n}x{kk}: K was not split"
        );
        let got = run_read(&k, &ops, t, &gy, t * n);
        let mut want = vec![0f32; t * n];
        cpu::matmul(&x, t, MatRef::new(DType::BF16, &w, n, kk), &mut want);
        for (w, y) in want.iter_mut().zip(&y0) {
            *w += y;
        }
        check(&format!("split-K matmul t{t} {n}x{kk}"), &got, &want);
    }
}

#[test]
fn rms_norm_rope_silu_add_copy_match_cpu() {
    let ctx = gpu();
    let k = Kernels::new(&ctx);
    let (t, heads, hd) = (5usize, 3usize, 12usize);
    let dims = StepDims {
        t: t as u32,
        pos0: 7,
    };
    // rms_norm over per-head rows
    let x = values(t * heads * hd, 5);
    let wt = values(hd, 6);
    let gx = GpuBuffer::from_f32(&ctx, &x, "x").unwrap();
    let gd = GpuBuffer::zeros(&ctx, x.len(), "d").unwrap();
    let gw = GpuBuffer::from_f32(&ctx, &wt, "w").unwrap();
    k.run(
        &[k.rms_norm(&gx, &gd, &gw, hd, heads, 0, 1e-6).unwrap()],
        dims,
    )
    .unwrap();
    let mut want = x.clone();
    cpu::rms_norm(&mut want, &wt, 1e-6);
    check("rms_norm", &gd.read_f32(&ctx, 0, x.len()).unwrap(), &want);
    // rope on the normed rows at positions 7..12
    let inv = cpu::rope::inv_freq(hd, 10_000.0);
    let table = rope_table(&inv, 64);
    let gt = GpuBuffer::from_f32(&ctx, &table, "cs").unwrap();
    k.run(&[k.rope(&gd, &gt, heads, hd / 2).unwrap()], dims)
        .unwrap();
    cpu::rope(&mut want, heads, &inv, 7);
    check("rope", &gd.read_f32(&ctx, 0, x.len()).unwrap(), &want);
    // silu_mul and add over rows of width 19
    let (g, u) = (values(t * 19, 7), values(t * 19, 8));
    let (gg, gu) = (
        GpuBuffer::from_f32(&ctx, &g, "g").unwrap(),
        GpuBuffer::from_f32(&ctx, &u, "u").unwrap(),
    );
    k.run(
        &[
            k.silu_mul(&gg, &gu, 19).unwrap(),
            k.add(&gg, &gu, 19).unwrap(),
        ],
        dims,
    )
    .unwrap();
    let mut want = g.clone();
    cpu::silu_mul(&mut want, &u);
    cpu::add_in_place(&mut want, &u);
    check(
        "silu_mul + add",
        &gg.read_f32(&ctx, 0, g.len()).unwrap(),
        &want,
    );
    // copy the step's rows into a cache at row pos0, and the last row alone
    let cache = GpuBuffer::zeros(&ctx, 64 * 19, "cache").unwrap();
    let last = GpuBuffer::zeros(&ctx, 19, "last").unwrap();
    k.run(
        &[
            k.copy(&gu, 0, &cache, 0, 19, 19, 0).unwrap(),
            k.copy(&gu, 0, &last, 0, 19, 0, 1).unwrap(),
        ],
        dims,
    )
    .unwrap();
    assert_eq!(cache.read_f32(&ctx, 7 * 19, t * 19).unwrap(), u);
    assert_eq!(last.read_f32(&ctx, 0, 19).unwrap(), u[(t - 1) * 19..]);
}

/// (positions, 2, half) cos then sin, as the GPU model builds it from the CPU kernel's math.
fn rope_table(inv: &[f32], positions: usize) -> Vec<f32> {
    qwen_omni::models::qwen3::gpu::rope_table(inv, positions)
}

#[test]
fn embedding_gathers_across_chunks_and_argmax_takes_first_maximum() {
    let ctx = gpu();
    let k = Kernels::new(&ctx);
    let (rows, dim) = (50usize, 7usize);
    let table = values(rows * dim, 9);
    let bytes = encode(DType::BF16, &table);
    let gm = GpuMatrix::upload_chunked(&ctx, DType::BF16, &bytes, rows, dim, 16, "emb").unwrap();
    let ids = [0u32, 49, 16, 15, 33];
    let gids = GpuBuffer::from_u32(&ctx, &ids, "ids").unwrap();
    let out = GpuBuffer::zeros(&ctx, ids.len() * dim, "out").unwrap();
    k.run(
        &k.embedding(&gm, &gids, &out).unwrap(),
        StepDims { t: 5, pos0: 0 },
    )
    .unwrap();
    let mut want = vec![0f32; ids.len() * dim];
    cpu::embedding_gather(MatRef::new(DType::BF16, &bytes, rows, dim), &ids, &mut want);
    assert_eq!(out.read_f32(&ctx, 0, want.len()).unwrap(), want);

    let mut logits = values(151_937, 10);
    logits[1234] = 5.0;
    logits[99_999] = 5.0;
    let gl = GpuBuffer::from_f32(&ctx, &logits, "logits").unwrap();
    let (id, next) = (
        GpuBuffer::zeros(&ctx, 1, "id").unwrap(),
        GpuBuffer::zeros(&ctx, 1, "next").unwrap(),
    );
    let parts = Kernels::argmax_parts(logits.len());
    let (pv, pi) = (
        GpuBuffer::zeros(&ctx, parts, "pv").unwrap(),
        GpuBuffer::zeros(&ctx, parts, "pi").unwrap(),
    );
    k.run(
        &k.argmax(&gl, logits.len(), &pv, &pi, &id, &next).unwrap(),
        StepDims { t: 1, pos0: 0 },
    )
    .unwrap();
    assert_eq!(
        id.read_u32(&ctx, 0, 1).unwrap(),
        vec![cpu::argmax(&logits) as u32]
    );
    assert_eq!(next.read_u32(&ctx, 0, 1).unwrap(), vec![1234]);
}

/// A vector `q` quantised on the device (gpu/matvec_q8.rs layout) against the Q8_0 rule applied
/// to its f32 values `f`: scales m / 127 to an ulp, each int8 within one step (the device's
/// 127 / m may differ from the CPU's by an ulp and move a value on a rounding boundary).
fn check_quantised(what: &str, f: &[f32], q: &[u32]) {
    let nb = f.len() / 32;
    for b in 0..nb {
        let blk = &f[b * 32..(b + 1) * 32];
        let m = blk.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = f32::from_bits(q[8 * nb + b]);
        assert!(
            (d - m / 127.0).abs() <= 1e-6 * m,
            "{what}: block {b} scale {d} vs {m}/127"
        );
        let inv = if m > 0.0 { 127.0 / m } else { 0.0 };
        for (i, v) in blk.iter().enumerate() {
            let word = q[(b * 32 + i) / 4];
            let got = (word >> (8 * (i % 4))) as u8 as i8 as f32;
            let want = (v * inv).round_ties_even();
            assert!(
                (got - want).abs() <= 1.0,
                "{what}: block {b} value {i}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn decode_and_prefill_attention_match_cpu() {
    use qwen_omni::gpu::quantised_len;
    let ctx = gpu();
    let k = Kernels::new(&ctx);
    for &(heads, kv_heads, hd, pos0, t) in &[
        (4usize, 2usize, 16usize, 0usize, 1usize),
        (6, 2, 12, 9, 1),
        (3, 3, 24, 300, 1),
        // decode chunk edges: head_dim <= 128 takes 128 rows per workgroup of 512 where the
        // adapter allows: 64 rows, 128 (one chunk), 129 (two), 256; head_dim 256 takes 64 per
        // 256: 64, 65 (two), 201
        (2, 1, 128, 63, 1),
        (2, 1, 128, 127, 1),
        (2, 1, 128, 128, 1),
        (8, 2, 64, 255, 1),
        (4, 2, 256, 63, 1),
        (4, 2, 256, 64, 1),
        (4, 2, 256, 200, 1),
        (6, 2, 12, 0, 70),
        (4, 1, 32, 5, 19),
        (2, 1, 128, 3, 66),
        // prefill with head_dim 256 (16-row key tiles) over a cache prefix
        (2, 1, 256, 40, 20),
    ] {
        let ctx_len = pos0 + t + 3;
        let kvw = kv_heads * hd;
        let kc = values(ctx_len * kvw, 11);
        let vc = values(ctx_len * kvw, 12);
        let q = values(t * heads * hd, 13);
        let (gq, gk, gv) = (
            GpuBuffer::from_f32(&ctx, &q, "q").unwrap(),
            GpuBuffer::from_f32(&ctx, &kc, "k").unwrap(),
            GpuBuffer::from_f32(&ctx, &vc, "v").unwrap(),
        );
        let out = GpuBuffer::zeros(&ctx, q.len(), "out").unwrap();
        let dims = StepDims {
            t: t as u32,
            pos0: pos0 as u32,
        };
        if t == 1 {
            let scores = GpuBuffer::zeros(
                &ctx,
                Kernels::attn_decode_scratch(heads, hd, ctx_len),
                "attn_part",
            )
            .unwrap();
            // head sizes in whole blocks of 32 also write the output quantised (chained o_proj)
            let quantised = hd.is_multiple_of(32);
            let qo = GpuBuffer::zeros(&ctx, quantised_len(heads * hd), "q").unwrap();
            let qout = quantised.then_some(&qo);
            let ops = k
                .attn_decode(
                    &gq, &gk, &gv, &scores, &out, heads, kv_heads, hd, ctx_len, qout,
                )
                .unwrap();
            // twice, the output cleared between: past one chunk, the head's last workgroup
            // merges the chunks and must leave its device counter at zero for the next step
            k.run(&ops, dims).unwrap();
            out.write_f32(&ctx, 0, &vec![0.0; q.len()]);
            k.run(&ops, dims).unwrap();
            if quantised {
                let f = out.read_f32(&ctx, 0, heads * hd).unwrap();
                let q = qo.read_u32(&ctx, 0, quantised_len(heads * hd)).unwrap();
                check_quantised(&format!("attention h{heads} hd{hd} pos0 {pos0}"), &f, &q);
            }
        } else {
            k.run(
                &[k.attn_prefill(&gq, &gk, &gv, &out, heads, kv_heads, hd)
                    .unwrap()],
                dims,
            )
            .unwrap();
        }
        let mut want = vec![0f32; q.len()];
        let valid = (pos0 + t) * kvw;
        cpu::attention(
            &q,
            &kc[..valid],
            &vc[..valid],
            AttnShape {
                heads,
                kv_heads,
                head_dim: hd,
            },
            pos0,
            &mut want,
        );
        check(
            &format!("attention h{heads} kv{kv_heads} hd{hd} pos0 {pos0} t{t}"),
            &out.read_f32(&ctx, 0, q.len()).unwrap(),
            &want,
        );
    }
}

#[test]
fn missing_adapter_is_a_clear_error_listing_what_was_found() {
    let err = GpuContext::new(&GpuOptions {
        adapter: Some("no-such-gpu-xyz".into()),
        allow_software: true,
        max_binding: None,
        memory_budget: None,
    })
    .err()
    .expect("no adapter matches");
    let msg = err.to_string();
    assert!(
        msg.contains("no-such-gpu-xyz") && msg.contains("adapters found"),
        "{msg}"
    );
}

#[test]
fn fused_residual_add_and_swiglu_input_match_cpu_in_matvec_and_matmul() {
    let ctx = gpu();
    let k = Kernels::new(&ctx);
    for &(t, n, inter) in &[
        (1usize, 13usize, 24usize),
        (1, 40, 20),
        (9, 33, 64),
        (130, 7, 9),
    ] {
        // x holds gate | up for each token; y starts as a residual and gets W (silu(g) * u) added
        let w = encode(DType::BF16, &values(n * inter, 21));
        let gu = values(t * 2 * inter, 22);
        let resid = values(t * n, 23);
        let gm = GpuMatrix::upload(&ctx, DType::BF16, &w, n, inter, "down").unwrap();
        let gx = GpuBuffer::from_f32(&ctx, &gu, "gu").unwrap();
        let gy = GpuBuffer::from_f32(&ctx, &resid, "y").unwrap();
        let f = MatFlags {
            accumulate: true,
            swiglu_up_off: Some(inter),
        };
        let ops = if t == 1 {
            k.matvec(&gm, &gx, 0, &gy, 0, f).unwrap()
        } else {
            k.matmul(&gm, &gx, 2 * inter, &gy, n, 0, f).unwrap()
        };
        let got = run_read(&k, &ops, t, &gy, t * n);
        let mut want = resid.clone();
        for tok in 0..t {
            let mut g = gu[tok * 2 * inter..tok * 2 * inter + inter].to_vec();
            cpu::silu_mul(&mut g, &gu[tok * 2 * inter + inter..(tok + 1) * 2 * inter]);
            let mut y = vec![0f32; n];
            cpu::matvec(MatRef::new(DType::BF16, &w, n, inter), &g, &mut y);
            cpu::add_in_place(&mut want[tok * n..(tok + 1) * n], &y);
        }
        check(&format!("fused down t{t} n{n} inter{inter}"), &got, &want);
    }
}

#[test]
fn qk_norm_rope_and_cache_store_match_cpu() {
    let ctx = gpu();
    let k = Kernels::new(&ctx);
    let (t, heads, kvh, hd, pos0, cap) = (3usize, 6usize, 2usize, 12usize, 5usize, 16usize);
    let pitch = (heads + 2 * kvh) * hd;
    let qkv = values(t * pitch, 31);
    let (qn, kn) = (values(hd, 32), values(hd, 33));
    let inv = cpu::rope::inv_freq(hd, 1e6);
    let gq = GpuBuffer::zeros(&ctx, t * heads * hd, "q").unwrap();
    let (kc, vc) = (
        GpuBuffer::zeros(&ctx, cap * kvh * hd, "kc").unwrap(),
        GpuBuffer::zeros(&ctx, cap * kvh * hd, "vc").unwrap(),
    );
    let op = k
        .qk_norm_rope_kv(
            &GpuBuffer::from_f32(&ctx, &qkv, "qkv").unwrap(),
            &gq,
            &kc,
            &vc,
            &GpuBuffer::from_f32(&ctx, &qn, "qn").unwrap(),
            &GpuBuffer::from_f32(&ctx, &kn, "kn").unwrap(),
            &GpuBuffer::from_f32(&ctx, &rope_table(&inv, cap), "rope").unwrap(),
            heads,
            kvh,
            hd,
            1e-6,
        )
        .unwrap();
    k.run(
        &[op],
        StepDims {
            t: t as u32,
            pos0: pos0 as u32,
        },
    )
    .unwrap();
    let (mut q, mut kk, mut v) = (Vec::new(), Vec::new(), Vec::new());
    for tok in 0..t {
        let row = &qkv[tok * pitch..(tok + 1) * pitch];
        q.extend_from_slice(&row[..heads * hd]);
        kk.extend_from_slice(&row[heads * hd..(heads + kvh) * hd]);
        v.extend_from_slice(&row[(heads + kvh) * hd..]);
    }
    cpu::rms_norm(&mut q, &qn, 1e-6);
    cpu::rms_norm(&mut kk, &kn, 1e-6);
    cpu::rope(&mut q, heads, &inv, pos0);
    cpu::rope(&mut kk, kvh, &inv, pos0);
    check("q", &gq.read_f32(&ctx, 0, q.len()).unwrap(), &q);
    check(
        "k cache rows",
        &kc.read_f32(&ctx, pos0 * kvh * hd, kk.len()).unwrap(),
        &kk,
    );
    assert_eq!(vc.read_f32(&ctx, pos0 * kvh * hd, v.len()).unwrap(), v);
}

#[test]
fn stream_copy_bandwidth_is_measurable() {
    let ctx = gpu();
    let bw = qwen_omni::gpu::measure_copy_bandwidth(&ctx, 16 << 20, 3).unwrap();
    for v in [
        bw.shader_median,
        bw.shader_best,
        bw.engine_best,
        bw.read_best,
    ] {
        assert!(v.is_finite() && v > 1e8, "bandwidth {bw:?}");
    }
    assert!(bw.shader_best >= bw.shader_median);
    // reading alone moves half a copy's bytes per word: a read pass that counted like a copy,
    // or missed most of its loads, would land far from the copy's rate (lavapipe: 7-8 vs
    // 12-13 GB/s; an H200: 4.1-4.2 vs 3.9-4.0 TB/s)
    let ratio = bw.read_best / bw.shader_best;
    assert!(
        (0.25..4.0).contains(&ratio),
        "read / copy {ratio:.2}: {bw:?}"
    );
}

#[test]
fn matvec_with_folded_rms_norm_matches_cpu_norm_then_matvec() {
    let ctx = gpu();
    let mut k = Kernels::new(&ctx);
    let shapes = [(9usize, 16usize), (70, 448), (33, 1024)];
    for (rows, (n, kk)) in (1..=4u32).flat_map(|r| shapes.iter().map(move |s| (r, *s))) {
        k.tuning.matvec_rows = rows;
        let w = encode(DType::BF16, &values(n * kk, 41));
        let gm = GpuMatrix::upload(&ctx, DType::BF16, &w, n, kk, "w").unwrap();
        if !k.fuses_norm(&gm) {
            eprintln!(
                "adapter has no subgroups: the unfused path (rms_norm + matvec) is what runs"
            );
            return;
        }
        let x = values(kk, 42);
        let g = values(kk, 43);
        let gy = GpuBuffer::zeros(&ctx, n + 3, "y").unwrap();
        let ops = k
            .matvec_normed(
                &gm,
                &GpuBuffer::from_f32(&ctx, &x, "x").unwrap(),
                &GpuBuffer::from_f32(&ctx, &g, "g").unwrap(),
                1e-6,
                &gy,
                3,
            )
            .unwrap();
        k.run(&ops, StepDims { t: 1, pos0: 0 }).unwrap();
        let mut h = x.clone();
        cpu::rms_norm(&mut h, &g, 1e-6);
        let mut want = vec![0f32; n];
        cpu::matvec(MatRef::new(DType::BF16, &w, n, kk), &h, &mut want);
        check(
            &format!("matvec_normed {n}x{kk} rows {rows}"),
            &gy.read_f32(&ctx, 3, n).unwrap(),
            &want,
        );
    }
}

/// The device sampler against its CPU twin: the fast path (0 < top_k <= 64: radix select of
/// the k-th logit over the tokens above a bound, or over all when the bound leaves too many;
/// survivors finished by one invocation) picks exactly the twin's token at any vocabulary size
/// (its sums run over the few survivors, in index order); the general path
/// (top-k off or above 64, or more than 256 tokens tied at the k-th value) exactly for 1000
/// logits, and a token consistent with the twin's thresholds for 151936 (sums over the
/// vocabulary in another order).
#[test]
fn sampler_matches_its_cpu_twin() {
    use qwen_omni::models::sampler::{DEVICE_TOPK_MAX, SamplingParams, device_sample};
    let ctx = gpu();
    let k = Kernels::new(&ctx);
    let tied = |n: usize| -> Vec<f32> {
        // 300 tokens share the largest logit: 20 of them cannot be chosen without the rest
        let mut l: Vec<f32> = values(n, 7).iter().map(|v| v * 3.0 - 2.0).collect();
        for i in 0..300 {
            l[(i * 3 + 11) % n] = 4.5;
        }
        l
    };
    // the largest logits all in the shares of four of the 256 invocations: the bound from the
    // invocations' maxima then leaves thousands of tokens, and the radix select reads them all
    let crowded = |n: usize| -> Vec<f32> {
        let mut l: Vec<f32> = values(n, 9).iter().map(|v| v * 3.0).collect();
        for (i, x) in l.iter_mut().enumerate() {
            if i % 256 < 4 {
                *x = 8.0 + (i as f32 * 0.37).sin();
            }
        }
        l
    };
    for (n, logits) in [
        (
            1000usize,
            values(1000, 51)
                .iter()
                .map(|v| v * 9.0)
                .collect::<Vec<f32>>(),
        ),
        (
            151_936,
            values(151_936, 51).iter().map(|v| v * 9.0).collect(),
        ),
        (1000, tied(1000)),
        (151_936, crowded(151_936)),
    ] {
        let gl = GpuBuffer::from_f32(&ctx, &logits, "logits").unwrap();
        let (id, next) = (
            GpuBuffer::zeros(&ctx, 1, "id").unwrap(),
            GpuBuffer::zeros(&ctx, 1, "next").unwrap(),
        );
        let op = k.sample(&gl, n, &id, &next).unwrap();
        let base = SamplingParams::default();
        for p in [
            SamplingParams {
                temperature: 0.7,
                top_k: 20,
                top_p: 0.9,
                ..base.clone()
            },
            SamplingParams {
                temperature: 1.3,
                top_p: 0.5,
                ..base.clone()
            },
            SamplingParams {
                top_k: 5,
                min_p: 0.1,
                ..base.clone()
            },
            SamplingParams {
                temperature: 0.6,
                top_k: 1,
                ..base.clone()
            },
            SamplingParams {
                temperature: 2.0,
                top_k: DEVICE_TOPK_MAX,
                top_p: 0.8,
                ..base.clone()
            },
            SamplingParams {
                temperature: 2.0,
                top_k: DEVICE_TOPK_MAX + 1,
                top_p: 0.8,
                ..base.clone()
            },
        ] {
            let fast = p.top_k > 0 && p.top_k <= DEVICE_TOPK_MAX;
            for u in [0.013f32, 0.37, 0.93] {
                op.write_params(&ctx, &Kernels::sample_params(n, &p, u));
                k.run([&op], StepDims { t: 1, pos0: 0 }).unwrap();
                let got = id.read_u32(&ctx, 0, 1).unwrap()[0];
                if n <= 1000 || fast {
                    assert_eq!(got, device_sample(&logits, &p, u), "n {n} {p:?} u {u}");
                }
                common::assert_pick_consistent(&logits, &p, u, got);
                assert_eq!(next.read_u32(&ctx, 0, 1).unwrap()[0], got);
            }
        }
    }
}

#[test]
fn q8_0_matvec_and_matmul_match_the_cpu_q8_0_kernels() {
    use qwen_omni::quant;
    let ctx = gpu();
    let mut k = Kernels::new(&ctx);
    let shapes = [
        (1usize, 13usize, 64usize, 5usize),
        (1, 70, 96, 1000),
        (1, 9, 32, 4),
        (1, 3, 64, 4),
        // 33 blocks a row: a subgroup's stretch of blocks and part of another, so KSPLIT's
        // later parts have blocks to take
        (1, 40, 1056, 7),
        (7, 33, 64, 16),
        (70, 130, 160, 1000),
    ];
    // the exact path: f32 activations (the int8-activation path has its own twin test below);
    // rows whole per subgroup, then (where the subgroup size is fixed) shared by 2 subgroups
    // in the default shape or 4 in the wide one (KSPLIT; these matrices are small enough to
    // take the wide shape unless the default one is forced)
    k.tuning.q8_dot = false;
    let min_wgs = k.tuning.q8_min_wgs;
    let runs = (1..=4u32).flat_map(|r| shapes.iter().map(move |s| (r, *s)));
    let runs = [1u32, 2, 4]
        .into_iter()
        .flat_map(|split| runs.clone().map(move |r| (split, r)));
    for (split, (rows, (t, n, kk, chunk))) in runs.filter(|(_, (r, s))| *r == 1 || s.0 == 1) {
        k.tuning.q8_ksplit = split;
        k.tuning.q8_wide_ksplit = split;
        k.tuning.q8_min_wgs = if split == 2 { 1 } else { min_wgs };
        k.tuning.q8_rows = rows;
        k.tuning.matvec_wg = [256, 64, 128, 64][rows as usize - 1];
        let w = values(n * kk, 61);
        let (qs, sc) = quant::quantize_matrix(n, kk, |r, out| {
            out.copy_from_slice(&w[r * kk..(r + 1) * kk])
        });
        let mat = MatRef::q8_0(&qs, &sc, n, kk);
        // stacked from two parts, split into chunks of `chunk` rows
        let cut = n / 3;
        let nb2 = kk / 32 * 2;
        let parts = [
            (&qs[..cut * kk], &sc[..cut * nb2], cut),
            (&qs[cut * kk..], &sc[cut * nb2..], n - cut),
        ];
        let gm = GpuMatrix::upload_q8(&ctx, &parts, kk, "q8").unwrap();
        assert!(gm.is_q8);
        let _ = chunk;
        let x = values(t * kk, 62);
        let gx = GpuBuffer::from_f32(&ctx, &x, "x").unwrap();
        let gy = GpuBuffer::zeros(&ctx, t * n, "y").unwrap();
        let ops = if t == 1 {
            k.matvec(&gm, &gx, 0, &gy, 0, MatFlags::default()).unwrap()
        } else {
            k.matmul(&gm, &gx, kk, &gy, n, 0, MatFlags::default())
                .unwrap()
        };
        let got = run_read(&k, &ops, t, &gy, t * n);
        let mut want = vec![0f32; t * n];
        cpu::matmul(&x, t, mat, &mut want);
        check(
            &format!("q8 t{t} {n}x{kk} rows {rows} split {split}"),
            &got,
            &want,
        );
        if t == 1 {
            // the folded-norm variant
            let g = values(kk, 63);
            let gg = GpuBuffer::from_f32(&ctx, &g, "g").unwrap();
            let ops = k.matvec_normed(&gm, &gx, &gg, 1e-6, &gy, 0).unwrap();
            k.run(&ops, StepDims { t: 1, pos0: 0 }).unwrap();
            let mut h = x.clone();
            cpu::rms_norm(&mut h, &g, 1e-6);
            let mut want = vec![0f32; n];
            cpu::matvec(mat, &h, &mut want);
            check(
                &format!("q8 normed {n}x{kk} rows {rows} split {split}"),
                &gy.read_f32(&ctx, 0, n).unwrap(),
                &want,
            );
        }
    }
}

/// CPU twin of the Q8_0 matvec with int8 activations (`Tuning::q8_dot`): x quantised per block
/// of 32 to round-half-even(x * 127 / m) with scale m / 127 (m the block's largest |x|), exact
/// integer block dots, then (weight scale) * (x scale) * dot summed over blocks.
fn q8_dot_twin(qs: &[u8], sc: &[u8], n: usize, kk: usize, x: &[f32]) -> Vec<f32> {
    let nb = kk / 32;
    let mut xq = vec![0i32; kk];
    let mut xd = vec![0f32; nb];
    for b in 0..nb {
        let blk = &x[b * 32..(b + 1) * 32];
        let m = blk.iter().fold(0f32, |a, v| a.max(v.abs()));
        let inv = if m > 0.0 { 127.0 / m } else { 0.0 };
        for (i, v) in blk.iter().enumerate() {
            xq[b * 32 + i] = (v * inv).round_ties_even() as i32;
        }
        xd[b] = m / 127.0;
    }
    (0..n)
        .map(|r| {
            (0..nb)
                .map(|b| {
                    let dot: i32 = (0..32)
                        .map(|i| qs[r * kk + b * 32 + i] as i8 as i32 * xq[b * 32 + i])
                        .sum();
                    let s = u16::from_le_bytes([sc[(r * nb + b) * 2], sc[(r * nb + b) * 2 + 1]]);
                    half::f16::from_bits(s).to_f32() * xd[b] * dot as f32
                })
                .sum()
        })
        .collect()
}

/// The opt-in int8-activation Q8_0 matvec against its twin. Budget: the GPU may compute
/// 127 / m with a division that differs from the CPU's by an ulp, which can move a value that
/// sits on a rounding boundary by one step (d_x); one such step in a row of K changes the
/// result by about d_x * |w| against a sum of ~sqrt(K) such products: 1e-3 of the largest
/// output covers a few of them, still far below the ~1e-2 error of a wrong scale or block.
#[test]
fn q8_0_int8_activation_matvec_matches_its_cpu_twin() {
    use qwen_omni::quant;
    let ctx = gpu();
    let mut k = Kernels::new(&ctx);
    k.tuning.q8_dot = true;
    // (rows, K, rows per subgroup, workgroup size): odd shapes, rows shorter than a subgroup's
    // blocks, K at the workgroup copy's limit
    for &(n, kk, rows, wg) in &[
        (13usize, 64usize, 1u32, 256u32),
        (70, 96, 4, 256),
        (9, 4096, 2, 64),
        (33, 800, 3, 128),
        (40, 12288, 4, 256),
        (300, 160, 2, 64),
    ] {
        k.tuning.q8_rows = rows;
        k.tuning.q8_wg = wg;
        // several row groups per subgroup where the rows allow it
        k.tuning.q8_groups = if n >= 300 { 3 } else { 1 };
        k.tuning.q8_min_wgs = 1;
        let w = values(n * kk, 71);
        let (qs, sc) = quant::quantize_matrix(n, kk, |r, out| {
            out.copy_from_slice(&w[r * kk..(r + 1) * kk])
        });
        let gm = GpuMatrix::upload_q8(&ctx, &[(&qs[..], &sc[..], n)], kk, "q8").unwrap();
        let x = values(kk, 72);
        let gx = GpuBuffer::from_f32(&ctx, &x, "x").unwrap();
        let gy = GpuBuffer::zeros(&ctx, n, "y").unwrap();
        let ops = k.matvec(&gm, &gx, 0, &gy, 0, MatFlags::default()).unwrap();
        let got = run_read(&k, &ops, 1, &gy, n);
        let want = q8_dot_twin(&qs, &sc, n, kk, &x);
        let e = rel(&got, &want);
        assert!(e < 1e-3, "q8 dot {n}x{kk}: {e:.2e}");
        // folded RMSNorm: the twin quantises x * g and scales the result by inv_rms
        let g = values(kk, 73);
        let gg = GpuBuffer::from_f32(&ctx, &g, "g").unwrap();
        let ops = k.matvec_normed(&gm, &gx, &gg, 1e-6, &gy, 0).unwrap();
        let got = run_read(&k, &ops, 1, &gy, n);
        let xg: Vec<f32> = x.iter().zip(&g).map(|(a, b)| a * b).collect();
        let inv_rms = 1.0 / (x.iter().map(|v| v * v).sum::<f32>() / kk as f32 + 1e-6).sqrt();
        let want: Vec<f32> = q8_dot_twin(&qs, &sc, n, kk, &xg)
            .iter()
            .map(|v| v * inv_rms)
            .collect();
        let e = rel(&got, &want);
        assert!(e < 1e-3, "q8 dot normed {n}x{kk}: {e:.2e}");
    }
}

/// A chain of Q8_0 matvecs (gpu/matvec_q8.rs): a producer writes its final output quantised
/// (with the next RMSNorm's weight folded in, or as SwiGLU pairs of a stacked gate | up
/// matrix), and the consumer reads those blocks instead of quantising x itself. Against the
/// same int8-activation twin and budget as above, on the producer's own f32 output: the chain
/// changes where the rounding happens, not what it is. Rows per workgroup vary with the rows
/// per subgroup and the invocations per workgroup; the last workgroup is partly empty.
#[test]
fn chained_q8_0_matvecs_match_their_cpu_twin() {
    use qwen_omni::gpu::{Q8Input, QuantOut, quantised_len};
    use qwen_omni::quant;
    let ctx = gpu();
    let mut k = Kernels::new(&ctx);
    k.tuning.q8_min_wgs = 1;
    let q8 = |n: usize, kk: usize, seed: u64| {
        let w = values(n * kk, seed);
        let (qs, sc) = quant::quantize_matrix(n, kk, |r, out| {
            out.copy_from_slice(&w[r * kk..(r + 1) * kk])
        });
        let gm = GpuMatrix::upload_q8(&ctx, &[(&qs[..], &sc[..], n)], kk, "q8").unwrap();
        (qs, sc, gm)
    };
    // rows per workgroup (subgroups x rows x groups) must hold whole blocks and at most 128:
    // which shapes qualify depends on the adapter's subgroup size, so the cases that do are
    // run, the default four rows per subgroup always among them
    // then the wide shapes (`Tuning::q8_wide_wg`: 512 or 1024 invocations) where the adapter
    // takes them
    // then rows shared by 2-8 subgroups each (KSPLIT) where the subgroup size is fixed
    let mut ran = 0;
    let mut wide_ran = 0;
    let mut split_ran = 0;
    let cases = [
        (4u32, 1u32, 0u32, 1u32),
        (2, 2, 0, 1),
        (4, 2, 0, 1),
        (1, 4, 0, 1),
        (2, 1, 512, 1),
        (1, 1, 512, 1),
        (1, 1, 1024, 1),
        (4, 1, 0, 2),
        (1, 2, 0, 4),
        (2, 1, 512, 2),
        (1, 1, 1024, 4),
        (1, 1, 512, 8),
    ];
    // each shape with the tail's reads before the weight stream (EARLY) and after it
    let runs = cases.iter().flat_map(|&c| [(c, true), (c, false)]);
    for ((rows, groups, wide, split), early) in runs {
        k.tuning.q8_early = early;
        // with EARLY also the loops without their bounds test where a lane's trips fit
        // (FULL); without it the guarded loops
        k.tuning.q8_full_trips = early;
        k.tuning.q8_rows = rows;
        k.tuning.q8_groups = groups;
        k.tuning.q8_wide_wg = wide;
        k.tuning.q8_wide_rows = rows;
        k.tuning.q8_ksplit = if wide > 0 { 1 } else { split };
        k.tuning.q8_wide_ksplit = if wide > 0 { split } else { 1 };
        k.tuning.q8_min_wgs = if wide > 0 { u32::MAX } else { 1 };
        if wide > 0 {
            let (_, _, m) = q8(224, 32, 90);
            if k.q8_link_shape(&m, None).1 != wide {
                continue;
            }
            wide_ran += 1;
        }
        if split > 1 {
            let fits = ctx
                .fixed_subgroup_size()
                .is_some_and(|sg| wide.max(k.tuning.q8_wg) / sg >= split);
            if !fits {
                continue;
            }
        }
        let probe = |rows_total: usize, swiglu: bool| {
            let (_, _, m) = q8(rows_total, 32, 90);
            let q = GpuBuffer::zeros(&ctx, quantised_len(rows_total), "probe").unwrap();
            let out = if swiglu {
                QuantOut::SwiGlu(&q)
            } else {
                QuantOut::Normed(&q, &q)
            };
            k.q8_chain_fits(&m, Some(&out))
        };
        if !(probe(224, false) && probe(384, true)) {
            assert!(rows != 4 || groups != 1, "the default shape must chain");
            continue;
        }
        ran += 1;
        if split > 1 {
            split_ran += 1;
        }
        // 1. residual producer (accumulating) -> normed consumer. K of 33 blocks (and 18 for
        // the SwiGLU consumer below): a subgroup's stretch and part of another, so KSPLIT's
        // later parts have blocks too; K of 16 blocks: whole stretches for 8-lane subgroups,
        // so the loops drop their bounds test (FULL) where the subgroup size is fixed at 8
        let (mid, kk, n) = (512usize, 1056usize, 45usize);
        let (aq, asc, a) = q8(mid, kk, 91);
        let (bq, bs, b) = q8(n, mid, 92);
        let x = values(kk, 93);
        let r0 = values(mid, 94);
        let g = values(mid, 95);
        let (gx, gg) = (
            GpuBuffer::from_f32(&ctx, &x, "x").unwrap(),
            GpuBuffer::from_f32(&ctx, &g, "g").unwrap(),
        );
        let gr = GpuBuffer::from_f32(&ctx, &r0, "residual").unwrap();
        let qa = GpuBuffer::zeros(&ctx, quantised_len(mid), "qa").unwrap();
        let gy = GpuBuffer::zeros(&ctx, n, "y").unwrap();
        let out = QuantOut::Normed(&qa, &gg);
        assert!(
            k.q8_chain_fits(&a, Some(&out)),
            "rows {rows} groups {groups}"
        );
        let acc = MatFlags {
            accumulate: true,
            swiglu_up_off: None,
        };
        let input = Q8Input::F32 {
            x: &gx,
            x_off: 0,
            norm: None,
        };
        let mut ops = k
            .matvec_q8_linked(&a, input, &gr, 0, acc, Some(out))
            .unwrap();
        let input = Q8Input::Quantised {
            q: &qa,
            norm_eps: Some(1e-6),
        };
        ops.extend(
            k.matvec_q8_linked(&b, input, &gy, 0, MatFlags::default(), None)
                .unwrap(),
        );
        let got = run_read(&k, &ops, 1, &gy, n);
        let h = gr.read_f32(&ctx, 0, mid).unwrap();
        let want_h: Vec<f32> = q8_dot_twin(&aq, &asc, mid, kk, &x)
            .iter()
            .zip(&r0)
            .map(|(v, r)| v + r)
            .collect();
        let e = rel(&h, &want_h);
        // (the same int8 products as the twin; an input rounded to the other int8 step moves
        // a row by 1/127 of a block's share, well inside the chain checks' 1e-3 below)
        assert!(
            e < 1e-3,
            "accumulated residual, rows {rows} groups {groups} split {split} early {early}: {e:.2e}"
        );
        let hg: Vec<f32> = h.iter().zip(&g).map(|(a, b)| a * b).collect();
        let inv_rms = 1.0 / (h.iter().map(|v| v * v).sum::<f32>() / mid as f32 + 1e-6).sqrt();
        let want: Vec<f32> = q8_dot_twin(&bq, &bs, n, mid, &hg)
            .iter()
            .map(|v| v * inv_rms)
            .collect();
        let e = rel(&got, &want);
        assert!(
            e < 1e-3,
            "chained normed, rows {rows} groups {groups} split {split} early {early}: {e:.2e}"
        );

        // 2. stacked gate | up producer -> SwiGLU consumer; the producer's f32 rows stay where
        // a plain matvec puts them
        let inter = 576usize;
        let (_, _, gu) = q8(2 * inter, kk, 96);
        let (dq, ds, d) = q8(n, inter, 97);
        let qb = GpuBuffer::zeros(&ctx, quantised_len(inter), "qb").unwrap();
        let ggu = GpuBuffer::zeros(&ctx, 2 * inter, "gate_up").unwrap();
        let plain = GpuBuffer::zeros(&ctx, 2 * inter, "plain").unwrap();
        let out = QuantOut::SwiGlu(&qb);
        assert!(
            k.q8_chain_fits(&gu, Some(&out)),
            "rows {rows} groups {groups}"
        );
        let input = Q8Input::F32 {
            x: &gx,
            x_off: 0,
            norm: None,
        };
        let mut ops = k
            .matvec_q8_linked(&gu, input, &ggu, 0, MatFlags::default(), Some(out))
            .unwrap();
        ops.extend(
            k.matvec(&gu, &gx, 0, &plain, 0, MatFlags::default())
                .unwrap(),
        );
        let input = Q8Input::Quantised {
            q: &qb,
            norm_eps: None,
        };
        ops.extend(
            k.matvec_q8_linked(&d, input, &gy, 0, MatFlags::default(), None)
                .unwrap(),
        );
        let got = run_read(&k, &ops, 1, &gy, n);
        let v = ggu.read_f32(&ctx, 0, 2 * inter).unwrap();
        assert_eq!(
            v,
            plain.read_f32(&ctx, 0, 2 * inter).unwrap(),
            "paired rows moved"
        );
        let s: Vec<f32> = (0..inter)
            .map(|i| v[i] / (1.0 + (-v[i]).exp()) * v[inter + i])
            .collect();
        let want = q8_dot_twin(&dq, &ds, n, inter, &s);
        let e = rel(&got, &want);
        assert!(
            e < 1e-3,
            "chained SwiGLU, rows {rows} groups {groups} split {split} early {early}: {e:.2e}"
        );
    }
    assert!(
        ran >= 2,
        "only {ran} shape(s) of rows per workgroup chained"
    );
    if ctx.limits.max_compute_invocations_per_workgroup >= 512 {
        assert!(wide_ran >= 1, "no wide shape ran");
    }
    if ctx.fixed_subgroup_size().is_some() {
        assert!(split_ran >= 2, "only {split_ran} KSPLIT shape(s) ran");
    }
}

/// The chain of a dense layer as one phased dispatch (o_proj -> gate_up -> down -> next qkv,
/// matvec_q8_phases.wgsl) against the same four links as separate dispatches: the same
/// arithmetic in the same order, so within an f32 ulp budget; twice, since the dispatch must
/// leave its counters ready for the next, then as two dispatches of two phases; with 0, 1
/// and 2 block trips of weights loaded before each phase's wait (gate_up's K = 1056 makes
/// two trips even for 32-lane subgroups, the second partly past the row's end).
#[test]
fn phased_q8_0_chain_matches_the_chain_of_dispatches() {
    use qwen_omni::gpu::{ChainPhase, Q8Input, QuantOut, quantised_len};
    use qwen_omni::quant;
    let ctx = gpu();
    // each count of weight trips loaded before a phase's wait
    let mut kernels: Vec<(String, Kernels)> = (0..3)
        .map(|pre| {
            let mut k = Kernels::new(&ctx);
            k.tuning.q8_prefetch = pre;
            (format!("{pre} trips ahead"), k)
        })
        .collect();
    // persistent: G workgroups take every phase in turn (tiles i, i + G, ...): one workgroup
    // where they run one at a time, 8 on any other GPU (all resident at once), and on an H200
    // the shapes that passed there in s10 (runs 3 and 12; one workgroup per SM of its 132)
    // (and with each workgroup's whole share of a phase as one tile: with one workgroup the
    // share passes the tile's 256 rows, so it still loops over tiles)
    // (the residual loaded just before each store instead of beside the input copy)
    let mut k = Kernels::new(&ctx);
    k.tuning.q8_persist_early = false;
    kernels.push(("the residual late".into(), k));
    let mut persistent = vec![
        (1, 1024, 1, 1, false),
        (1, 256, 2, 2, false),
        (1, 1024, 1, 1, true),
        (1, 256, 2, 0, true),
    ];
    if !common::one_workgroup_at_a_time(&ctx) {
        // (two workgroups: gate_up's 384 rows as tiles of 192, the real 8B's gate_up tile)
        persistent.extend([
            (8, 1024, 1, 1, false),
            (8, 1024, 1, 1, true),
            (2, 1024, 1, 1, true),
        ]);
    }
    if ctx.info.name.contains("H200") {
        persistent.extend([
            (132, 1024, 1, 2, false),
            (132, 512, 2, 1, false),
            (100, 256, 4, 0, false),
            (132, 1024, 1, 2, true),
            (132, 1024, 1, 0, true),
        ]);
    }
    for (g, wg, rows, pre, tile) in persistent {
        let mut k = Kernels::new(&ctx);
        k.tuning.q8_persist = g;
        k.tuning.q8_persist_wg = wg;
        k.tuning.q8_persist_rows = rows;
        k.tuning.q8_prefetch = pre;
        k.tuning.q8_persist_tile = tile;
        // (and every whole-share shape with the residual loaded early)
        k.tuning.q8_persist_early = tile;
        kernels.push((
            format!("persistent {g} x {wg}, {rows} rows, {pre} trips ahead, whole shares {tile}"),
            k,
        ));
    }
    let k = &kernels[0].1;
    let q8 = |n: usize, kk: usize, seed: u64| {
        let w = values(n * kk, seed);
        let (qs, sc) = quant::quantize_matrix(n, kk, |r, out| {
            out.copy_from_slice(&w[r * kk..(r + 1) * kk])
        });
        GpuMatrix::upload_q8(&ctx, &[(&qs[..], &sc[..], n)], kk, "q8").unwrap()
    };
    let (h, heads_dim, inter, qkv_rows) = (1056usize, 128usize, 192usize, 160usize);
    let (o, gu, down, qkv) = (
        q8(h, heads_dim, 101),
        q8(2 * inter, h, 102),
        q8(h, inter, 103),
        q8(qkv_rows, h, 104),
    );
    let buf = |v: &[f32], label: &str| GpuBuffer::from_f32(&ctx, v, label).unwrap();
    let zeros = |n: usize, label: &str| GpuBuffer::zeros(&ctx, n, label).unwrap();
    let (g_post, g_next) = (
        buf(&values(h, 105), "g_post"),
        buf(&values(h, 106), "g_next"),
    );
    let attn = buf(&values(heads_dim, 107), "attn");
    let residual = values(h, 108);
    let acc = MatFlags {
        accumulate: true,
        swiglu_up_off: None,
    };
    let none = MatFlags::default();
    // both runs start from the attention output quantised by a plain link
    let run = |k: &Kernels, phased: bool, split: bool, counters: &GpuBuffer| {
        let x = buf(&residual, "x");
        let (qo, qa, qb, qc) = (
            zeros(quantised_len(heads_dim), "qo"),
            zeros(quantised_len(h), "qa"),
            zeros(quantised_len(inter), "qb"),
            zeros(quantised_len(h), "qc"),
        );
        let (gu_out, qkv_out) = (zeros(2 * inter, "gu"), zeros(qkv_rows, "qkv"));
        let scratch = zeros(heads_dim, "scratch");
        let id = q8(heads_dim, heads_dim, 109);
        let input = Q8Input::F32 {
            x: &attn,
            x_off: 0,
            norm: None,
        };
        let out = QuantOut::Normed(&qo, &attn);
        let mut ops = k
            .matvec_q8_linked(&id, input, &scratch, 0, none, Some(out))
            .unwrap();
        let quantised = |q, norm_eps| Q8Input::Quantised { q, norm_eps };
        if phased {
            let phases = [
                ChainPhase {
                    w: &o,
                    input: &qo,
                    norm_eps: None,
                    y: &x,
                    y_off: 0,
                    accumulate: true,
                    out: Some(QuantOut::Normed(&qa, &g_post)),
                },
                ChainPhase {
                    w: &gu,
                    input: &qa,
                    norm_eps: Some(1e-6),
                    y: &gu_out,
                    y_off: 0,
                    accumulate: false,
                    out: Some(QuantOut::SwiGlu(&qb)),
                },
                ChainPhase {
                    w: &down,
                    input: &qb,
                    norm_eps: None,
                    y: &x,
                    y_off: 0,
                    accumulate: true,
                    out: Some(QuantOut::Normed(&qc, &g_next)),
                },
                ChainPhase {
                    w: &qkv,
                    input: &qc,
                    norm_eps: Some(1e-6),
                    y: &qkv_out,
                    y_off: 0,
                    accumulate: false,
                    out: None,
                },
            ];
            // all four in one dispatch, or two dispatches of two phases
            if split {
                ops.push(k.matvec_q8_phases(&phases[..2], counters, 0).unwrap());
                ops.push(k.matvec_q8_phases(&phases[2..], counters, 0).unwrap());
            } else {
                ops.push(k.matvec_q8_phases(&phases, counters, 0).unwrap());
            }
        } else {
            let out = Some(QuantOut::Normed(&qa, &g_post));
            ops.extend(
                k.matvec_q8_linked(&o, quantised(&qo, None), &x, 0, acc, out)
                    .unwrap(),
            );
            let out = Some(QuantOut::SwiGlu(&qb));
            let input = quantised(&qa, Some(1e-6));
            ops.extend(
                k.matvec_q8_linked(&gu, input, &gu_out, 0, none, out)
                    .unwrap(),
            );
            let out = Some(QuantOut::Normed(&qc, &g_next));
            ops.extend(
                k.matvec_q8_linked(&down, quantised(&qb, None), &x, 0, acc, out)
                    .unwrap(),
            );
            let input = quantised(&qc, Some(1e-6));
            ops.extend(
                k.matvec_q8_linked(&qkv, input, &qkv_out, 0, none, None)
                    .unwrap(),
            );
        }
        let got = run_read(k, &ops, 1, &qkv_out, qkv_rows);
        (got, x.read_f32(&ctx, 0, h).unwrap())
    };
    let counters = GpuBuffer::zeros(&ctx, 4, "counters").unwrap();
    let (want_qkv, want_x) = run(k, false, false, &counters);
    for (what, k) in &kernels {
        for pass in 0..3 {
            let (got_qkv, got_x) = run(k, true, pass == 2, &counters);
            let e = rel(&got_qkv, &want_qkv).max(rel(&got_x, &want_x));
            assert!(e < 1e-5, "phased chain, {what}, pass {pass}: {e:.2e}");
            assert_eq!(
                counters.read_u32(&ctx, 0, 4).unwrap(),
                vec![0; 4],
                "counters left set ({what})"
            );
        }
    }
}

/// The grouped expert matvec (short MoE prefill steps) against the int8-activation twin: five
/// experts of 37 rows, one with six slots (two passes of four), one with none; plain inputs
/// shared by a token's two slots, and SwiGLU inputs one per slot.
#[test]
fn grouped_expert_matvec_matches_its_cpu_twin() {
    use qwen_omni::quant;
    let ctx = gpu();
    let k = Kernels::new(&ctx);
    let (experts, rows, top_k, t) = (5usize, 37usize, 2usize, 6usize);
    // slot s = token * 2 + choice; expert 1 gets six slots, expert 3 none
    let ids: Vec<u32> = vec![1, 0, 1, 2, 1, 4, 1, 0, 1, 2, 1, 4];
    let (mut groups, mut order) = (Vec::new(), Vec::new());
    for e in 0..experts as u32 {
        groups.push(order.len() as u32);
        order.extend((0..ids.len() as u32).filter(|&s| ids[s as usize] == e));
    }
    groups.push(order.len() as u32);
    groups.extend(&order);
    let gg = GpuBuffer::from_u32(&ctx, &groups, "groups").unwrap();
    for &(kk, swiglu) in &[(96usize, false), (2048, false), (160, true)] {
        let w = values(experts * rows * kk, 81);
        let (qs, sc) = quant::quantize_matrix(experts * rows, kk, |r, out| {
            out.copy_from_slice(&w[r * kk..(r + 1) * kk])
        });
        let gm = GpuMatrix::upload_q8(&ctx, &[(&qs[..], &sc[..], experts * rows)], kk, "experts")
            .unwrap();
        // inputs: a row per token (shared by its slots), or gate|up per slot
        let (x, x_div, x_stride) = if swiglu {
            (values(ids.len() * 2 * kk, 82), 1, 2 * kk)
        } else {
            (values(t * kk, 83), top_k, kk)
        };
        let gx = GpuBuffer::from_f32(&ctx, &x, "x").unwrap();
        let gy = GpuBuffer::zeros(&ctx, ids.len() * rows, "y").unwrap();
        let f = MatFlags {
            accumulate: false,
            swiglu_up_off: swiglu.then_some(kk),
        };
        let op = k
            .matvec_grouped(&gm, rows, experts, &gx, 0, x_stride, x_div, &gy, &gg, 64, f)
            .unwrap();
        k.run(
            [&op],
            StepDims {
                t: t as u32,
                pos0: 0,
            },
        )
        .unwrap();
        let got = gy.read_f32(&ctx, 0, ids.len() * rows).unwrap();
        let nb = kk / 32;
        for (s, &e) in ids.iter().enumerate() {
            let e = e as usize;
            let row = &x[(s / x_div) * x_stride..];
            let xin: Vec<f32> = if swiglu {
                (0..kk)
                    .map(|i| row[i] / (1.0 + (-row[i]).exp()) * row[kk + i])
                    .collect()
            } else {
                row[..kk].to_vec()
            };
            let want = q8_dot_twin(
                &qs[e * rows * kk..(e + 1) * rows * kk],
                &sc[e * rows * nb * 2..(e + 1) * rows * nb * 2],
                rows,
                kk,
                &xin,
            );
            let e_rel = rel(&got[s * rows..(s + 1) * rows], &want);
            assert!(e_rel < 1e-3, "K {kk} swiglu {swiglu} slot {s}: {e_rel:.2e}");
        }
    }
}

/// Short prefill steps of dense Q8_0 layers: matvecs over the step's tokens (written into a
/// strided output at an offset, or added to it) against the int8-activation twin, below and
/// above the token count where the tiled matmul takes over.
#[test]
fn short_prefill_linear_matches_its_cpu_twin() {
    use qwen_omni::quant;
    let ctx = gpu();
    let mut k = Kernels::new(&ctx);
    k.tuning.small_t = 8;
    let (n, kk, y_ld, y_off) = (45usize, 160usize, 50usize, 3usize);
    let w = values(n * kk, 91);
    let (qs, sc) = quant::quantize_matrix(n, kk, |r, out| {
        out.copy_from_slice(&w[r * kk..(r + 1) * kk])
    });
    let gm = GpuMatrix::upload_q8(&ctx, &[(&qs[..], &sc[..], n)], kk, "w").unwrap();
    for &(t, accumulate) in &[(1usize, false), (6, true), (8, false)] {
        let x = values(t * kk, 92 + t as u64);
        let y0 = values(t * y_ld, 93);
        let gx = GpuBuffer::from_f32(&ctx, &x, "x").unwrap();
        let gy = GpuBuffer::from_f32(&ctx, &y0, "y").unwrap();
        let f = MatFlags {
            accumulate,
            swiglu_up_off: None,
        };
        let ops = k.linear_prefill(&gm, &gx, kk, &gy, y_ld, y_off, f).unwrap();
        let got = run_read(&k, &ops, t, &gy, t * y_ld);
        for tok in 0..t {
            let want = q8_dot_twin(&qs, &sc, n, kk, &x[tok * kk..(tok + 1) * kk]);
            let row = &got[tok * y_ld..(tok + 1) * y_ld];
            let g: Vec<f32> = (0..n)
                .map(|r| {
                    row[y_off + r]
                        - if accumulate {
                            y0[tok * y_ld + y_off + r]
                        } else {
                            0.0
                        }
                })
                .collect();
            let e = rel(&g, &want);
            assert!(e < 1e-3, "t {t} token {tok} acc {accumulate}: {e:.2e}");
            // untouched columns stay as they were
            assert_eq!(row[0], y0[tok * y_ld]);
            assert_eq!(row[y_ld - 1], y0[tok * y_ld + y_ld - 1]);
        }
    }
}

/// The stream probe behind `omni bench-stream` must read every word of every op exactly once,
/// or its times mean nothing: the xor of its workgroups' checksums against the host's xor of
/// the same words, over odd op sizes (partial rounds, workgroups past an op's end), one
/// dispatch per op and one persistent dispatch (one workgroup: lavapipe runs too few at once
/// for a device-wide wait), with and without the next op's loads issued ahead.
#[test]
fn stream_probe_reads_every_word_once() {
    use qwen_omni::gpu::stream_probe::{Groups, StreamProbe, StreamVariant, layout};
    let ctx = common::gpu();
    let probe = StreamProbe::new(&ctx, 1 << 20).unwrap();
    let words: Vec<u32> = (0..probe.words() as u32 * 4)
        .map(|i| i.wrapping_mul(0x9e37_79b9) ^ (i >> 3))
        .collect();
    probe.write(&words).unwrap();
    // the xor of every word of `ops`, by lane of a 16-byte word: what reading each once gives
    let xor_of = |ops: &[(u64, u64)]| {
        let mut sum = [0u32; 4];
        for &(off, len) in ops {
            for i in off * 4..(off + len) * 4 {
                sum[(i % 4) as usize] ^= words[i as usize];
            }
        }
        sum
    };
    let sizes = [16 * 1000 + 16, 48_000, 16, 16 * 4097, 700_000];
    let ops = layout(&sizes, probe.words()).unwrap();
    let want = xor_of(&ops);
    let chain = StreamVariant::chain;
    let variants = [
        chain(64, 1, Groups::Fixed(7)),
        chain(256, 4, Groups::Fixed(33)),
        chain(128, 8, Groups::PerBytes(4096)),
        chain(256, 3, Groups::Fixed(5000)),
        StreamVariant {
            persistent: true,
            ..chain(128, 4, Groups::Fixed(1))
        },
        StreamVariant {
            persistent: true,
            ahead: true,
            ..chain(64, 2, Groups::Fixed(1))
        },
    ];
    for v in variants {
        let run = probe.checksum(&v, &ops, &[], &[]).unwrap();
        assert!(!run.gave_up, "{v}: a wait gave up");
        assert_eq!(run.sum, want, "{v}");
    }
    // persistent dispatches over segments of the ops (the counter runs on across them); where
    // workgroups run at once also with several, every one of which must count itself at every
    // wait but a segment's last
    let mut persistent: Vec<StreamVariant> = variants[4..].to_vec();
    if !common::one_workgroup_at_a_time(&ctx) {
        persistent.push(StreamVariant {
            persistent: true,
            ..chain(256, 4, Groups::Fixed(8))
        });
        persistent.push(StreamVariant {
            persistent: true,
            ahead: true,
            ..chain(128, 2, Groups::Fixed(5))
        });
    }
    for breaks in [&[][..], &[1usize, 2], &[3], &[1, 2, 3, 4]] {
        for v in &persistent {
            let v = StreamVariant {
                layered: !breaks.is_empty(),
                ..*v
            };
            let run = probe.checksum(&v, &ops, &[], breaks).unwrap();
            assert!(!run.gave_up, "{v} {breaks:?}: a wait gave up");
            assert_eq!(run.sum, want, "{v} {breaks:?}");
            let Groups::Fixed(g) = v.groups else {
                unreachable!()
            };
            let g = ops
                .iter()
                .map(|o| (g as u64).min(o.1.div_ceil(v.wg as u64)))
                .max()
                .unwrap();
            let waits = ops.len() - 1 - breaks.len();
            assert_eq!(
                run.arrivals as u64,
                waits as u64 * g,
                "{v} {breaks:?}: arrivals"
            );
        }
    }
    assert!(probe.checksum(&variants[4], &ops, &[], &[2, 2]).is_err());
    // a vector handed over at every wait (kept out of the checksum; a chain variant cannot
    // hand over)
    for v in &variants[4..] {
        let v = StreamVariant {
            handover_words: 100,
            ..*v
        };
        let run = probe.checksum(&v, &ops, &[], &[2]).unwrap();
        assert!(!run.gave_up, "{v}");
        assert_eq!(run.sum, want, "{v}");
    }
    let bad = StreamVariant {
        handover_words: 100,
        ..variants[0]
    };
    assert!(probe.checksum(&bad, &ops, &[], &[]).is_err());
    // the matvec's row pattern: rows of 64 words (1 KiB), ops of whole rows
    let rows_ops = layout(&[64 * 16 * 7, 64 * 16 * 40, 64 * 16], probe.words()).unwrap();
    let want_rows = xor_of(&rows_ops);
    for (wg, groups) in [
        (64, Groups::Fixed(3)),
        (256, Groups::Fixed(40)),
        (128, Groups::PerBytes(2048)),
    ] {
        let v = StreamVariant {
            row_words: 64,
            ..chain(wg, 1, groups)
        };
        // (32: half-block lanes, one word per lane per trip)
        for row_extra in [0, 32] {
            let v = StreamVariant { row_extra, ..v };
            assert_eq!(
                probe.checksum(&v, &rows_ops, &[], &[]).unwrap().sum,
                want_rows,
                "{v}"
            );
        }
        // with the scales, input and math the rows hold other words: it only has to run
        for (row_extra, shmem_words) in [(7, 0), (15, 256), (23, 0), (39, 0)] {
            let v = StreamVariant {
                row_extra,
                shmem_words,
                ..v
            };
            probe.checksum(&v, &rows_ops, &[], &[]).unwrap();
        }
    }
    // each op its own row width (a whole step's matrices), a plain op among them, one
    // dispatch per op and persistent: every word once (the persistent kernel's rows read ahead
    // of a wait go to the keep-alive value, not the checksum, and are read again by the op)
    let mixed_rows = [128u32, 0, 256];
    let mixed = layout(&[128 * 16 * 5, 16 * 1001, 256 * 16 * 9], probe.words()).unwrap();
    let want_mixed = xor_of(&mixed);
    let wgs = if common::one_workgroup_at_a_time(&ctx) {
        1
    } else {
        3
    };
    for (persistent, ahead, unrolled, half) in [
        (false, false, false, 0),
        (false, false, true, 0),
        (true, false, false, 0),
        (true, true, false, 0),
        (true, false, true, 0),
        (false, false, true, 32),
        (true, true, true, 32),
    ] {
        let v = StreamVariant {
            rows_per_op: true,
            persistent,
            ahead,
            unrolled,
            row_extra: half,
            ..chain(128, 1, Groups::Fixed(wgs))
        };
        let run = probe.checksum(&v, &mixed, &mixed_rows, &[]).unwrap();
        assert!(!run.gave_up, "{v}");
        assert_eq!(run.sum, want_mixed, "{v}");
        // the input handed over, with the math: still every word once
        let hand = if persistent { 40 } else { 0 };
        let vh = StreamVariant {
            row_extra: 6 | half,
            handover_words: hand,
            ..v
        };
        let run = probe.checksum(&vh, &mixed, &mixed_rows, &[]).unwrap();
        assert!(!run.gave_up, "{vh}");
        assert_eq!(run.sum, want_mixed, "{vh}");
        // with the scales too the rows hold other words: it only has to run
        let v = StreamVariant {
            row_extra: 7 | half,
            handover_words: hand,
            ..v
        };
        assert!(
            !probe
                .checksum(&v, &mixed, &mixed_rows, &[])
                .unwrap()
                .gave_up
        );
    }
    // the two words read ahead of each wait used by the row in place of its first trip's
    // loads (ROWX 64): then they are the row's own reads, still every word once
    for unrolled in [false, true] {
        let v = StreamVariant {
            rows_per_op: true,
            persistent: true,
            ahead: true,
            unrolled,
            row_extra: 64,
            ..chain(128, 2, Groups::Fixed(wgs))
        };
        let run = probe.checksum(&v, &mixed, &mixed_rows, &[]).unwrap();
        assert!(!run.gave_up, "{v}");
        assert_eq!(run.sum, want_mixed, "{v}");
        let vh = StreamVariant {
            row_extra: 64 | 6,
            handover_words: 40,
            ..v
        };
        let run = probe.checksum(&vh, &mixed, &mixed_rows, &[1]).unwrap();
        assert!(!run.gave_up, "{vh}");
        assert_eq!(run.sum, want_mixed, "{vh}");
    }
    // with the scales, extra work must not change what a variant reads: the input, math,
    // hand-over and words used in place against the same rows and slabs without them
    // (`StreamProbe::scales_reference`); and a variant whose words are used in place needs
    // ahead, 2 loads, a block per lane
    for extra in [64 | 7, 7, 1] {
        let v = StreamVariant {
            rows_per_op: true,
            persistent: true,
            ahead: extra & 64 != 0,
            row_extra: extra,
            handover_words: 40,
            ..chain(128, 2, Groups::Fixed(wgs))
        };
        let reference = StreamProbe::scales_reference(&v);
        assert_eq!(
            probe.checksum(&v, &mixed, &mixed_rows, &[]).unwrap().sum,
            probe
                .checksum(&reference, &mixed, &mixed_rows, &[])
                .unwrap()
                .sum,
            "{v}"
        );
    }
    for (ahead, loads, extra) in [
        (false, 2, 64),
        (true, 1, 64),
        (true, 2, 64 | 32),
        (true, 2, 48),
    ] {
        let v = StreamVariant {
            rows_per_op: true,
            persistent: true,
            ahead,
            row_extra: extra,
            ..chain(128, loads, Groups::Fixed(1))
        };
        assert!(probe.checksum(&v, &mixed, &mixed_rows, &[]).is_err(), "{v}");
    }
    // rows per op need a width for every op
    let v = StreamVariant {
        rows_per_op: true,
        ..chain(128, 1, Groups::Fixed(1))
    };
    assert!(probe.checksum(&v, &mixed, &mixed_rows[..2], &[]).is_err());
    // the checksum sees a word read twice or missed: an op list with one word more differs
    let mut longer = ops.clone();
    longer[2].1 += 1;
    assert_ne!(
        probe.checksum(&variants[1], &longer, &[], &[]).unwrap().sum,
        want
    );
}
