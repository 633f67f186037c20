//! `omni bench-stream`: a decode step's weight reads as plain reads (gpu/stream_probe.rs), at
//! a model's Q8_0 matrix sizes in the step's order, in several ways of reading. It answers how
//! fast the step could be before any kernel of ours does math: one dispatch per matrix (the
//! engine's structure), and one persistent dispatch with device counters between matrices
//! (what a persistent decode kernel, b068, could reach at most). Compare with `omni bench`'s
//! decode step on the same card.

use anyhow::{Result, bail};

use crate::gpu::measure_copy_bandwidth;
use crate::gpu::stream_probe::{Groups, StreamProbe, StreamVariant, layout};

pub struct BenchStreamArgs {
    pub synthetic: String,
    /// probe buffer size in bytes (capped by one binding)
    pub buffer_bytes: u64,
    pub steps: usize,
    pub passes: usize,
    /// only these variants ("chain" or "persist" or "ahead", invocations, loads, groups)
    pub variants: Option<String>,
    /// only the reads of this kind ("qkv", "attention", "o_proj", "gate_up", "down",
    /// "lm_head"): a chain of every layer's copy of it
    pub only: Option<String>,
    pub adapter: Option<String>,
    /// print the driver's statistics of the probe's pipelines whose shader contains this
    pub shader_stats: Option<String>,
    /// run the instruction-cache probe instead (gpu/icache_probe.rs)
    pub icache: bool,
}

/// Bytes of a (rows, cols) Q8_0 matrix.
fn q8_bytes(rows: usize, cols: usize) -> u64 {
    crate::quant::q8_0_bytes(rows * cols) as u64
}

/// The kinds of read of a step, in the step's order (`--only` takes one).
const READ_KINDS: [&str; 6] = ["qkv", "attention", "o_proj", "gate_up", "down", "lm_head"];

/// One read of a step: its kind, bytes, and row width in 16-byte words (a matrix's K int8
/// values; 0 for the attention's cache, which has no Q8_0 rows).
struct Read {
    kind: &'static str,
    bytes: u64,
    row_words: u32,
}

/// The reads of one decode step of a dense model in the engine's order: per layer qkv, the
/// attention's cache (`cached` positions of f32 keys and values), o_proj, gate_up, down;
/// then the lm_head.
fn step_reads(c: &crate::models::config::Qwen3Config, cached: usize) -> Result<Vec<Read>> {
    if c.num_experts > 0 {
        bail!(
            "bench-stream models dense steps only; `{}` is a mixture of experts",
            c.model_type
        );
    }
    let (h, hd) = (c.hidden_size, c.head_dim());
    let (q, kv) = (c.num_attention_heads * hd, c.num_key_value_heads * hd);
    let matrix = |kind, rows, k: usize| Read {
        kind,
        bytes: q8_bytes(rows, k),
        row_words: (k / 16) as u32,
    };
    let mut out = Vec::new();
    for _ in 0..c.num_hidden_layers {
        out.push(matrix("qkv", q + 2 * kv, h));
        out.push(Read {
            kind: "attention",
            bytes: (2 * kv * cached * 4) as u64,
            row_words: 0,
        });
        out.push(matrix("o_proj", h, q));
        out.push(matrix("gate_up", 2 * c.intermediate_size, h));
        out.push(matrix("down", h, c.intermediate_size));
    }
    out.push(matrix("lm_head", c.vocab_size, h));
    Ok(out)
}

/// The default sweep: the engine's structure in several read shapes, then the persistent one.
fn default_variants() -> Vec<StreamVariant> {
    let mut v = Vec::new();
    for wg in [256, 512, 1024] {
        for loads in [2, 4, 8] {
            for groups in [
                Groups::Fixed(132),
                Groups::Fixed(264),
                Groups::Fixed(528),
                Groups::PerBytes(64 << 10),
                Groups::PerBytes(16 << 10),
            ] {
                v.push(StreamVariant::chain(wg, loads, groups));
            }
        }
    }
    for (wg, groups) in [(1024, 132), (512, 132), (512, 264), (256, 264), (256, 528)] {
        for loads in [4, 8] {
            for (ahead, layered) in [(false, false), (true, false), (false, true), (true, true)] {
                v.push(StreamVariant {
                    persistent: true,
                    ahead,
                    layered,
                    ..StreamVariant::chain(wg, loads, Groups::Fixed(groups))
                });
            }
        }
    }
    v
}

/// "MODE:INVOCATIONS:LOADS:GROUPS[:rBYTES[s][x][m][b][:KB|:hWORDS] | :hWORDS]" (MODE chain,
/// persist, ahead, layer or layerahead; GROUPS a count or "NNk", one workgroup per NN KiB;
/// rBYTES: the matvec's row pattern over rows of BYTES (0: each matrix's own K), with s its
/// scales, x its input, m its int8 math, b scales and x scales through a u32 binding, i the
/// scales interleaved with the values (superblocks of 8 scales and 8 blocks), u the row loop
/// unrolled (the subgroup size and the two commonest row widths constant), c each lane one
/// 16-byte word (half a block) per trip, lanes on consecutive words, p (ahead, 2 loads) the
/// two words read before each wait used by the row in place of its first trip's loads; KB:
/// workgroup memory declared; hWORDS (persistent): a vector of WORDS 16-byte words handed over
/// at every wait, which rows with x then read their input from), several separated by commas.
fn parse_variants(spec: &str) -> Result<Vec<StreamVariant>> {
    spec.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let f: Vec<&str> = s.trim().split(':').collect();
            let (mode, wg, loads, groups, rows, shared) = match f[..] {
                [m, w, l, g] => (m, w, l, g, None, None),
                [m, w, l, g, r] => (m, w, l, g, Some(r), None),
                [m, w, l, g, r, k] => (m, w, l, g, Some(r), Some(k)),
                _ => bail!(
                    "--variants `{s}`: expected MODE:INVOCATIONS:LOADS:GROUPS[:rBYTES[:KB | :hWORDS] | :hWORDS]"
                ),
            };
            let (persistent, ahead, layered) = match mode {
                "chain" => (false, false, false),
                "persist" => (true, false, false),
                "ahead" => (true, true, false),
                "layer" => (true, false, true),
                "layerahead" => (true, true, true),
                _ => bail!(
                    "--variants `{s}`: mode `{mode}` is not chain, persist, ahead, layer or layerahead"
                ),
            };
            let num = |t: &str, what: &str| -> Result<u32> {
                t.parse::<u32>()
                    .map_err(|_| anyhow::anyhow!("--variants `{s}`: {what} `{t}` is not a number"))
            };
            let groups = match groups.strip_suffix('k') {
                Some(kb) => Groups::PerBytes(num(kb, "KiB per workgroup")? as u64 * 1024),
                None => Groups::Fixed(num(groups, "workgroups")?),
            };
            let mut handover_words = 0;
            let mut unrolled = false;
            // r0: each matrix's own row length (a whole step's rows differ)
            let (row_words, row_extra, rows_per_op) = match rows {
                None => (0, 0, false),
                Some(h) if h.starts_with('h') => {
                    handover_words = num(&h[1..], "handed-over words")?;
                    (0, 0, false)
                }
                Some(r) => {
                    let spec = r.strip_prefix('r').ok_or_else(|| {
                        anyhow::anyhow!("--variants `{s}`: rows `{r}` is not rBYTES[s][x][m][b][i][u][c][p]")
                    })?;
                    let digits = spec.trim_end_matches(['s', 'x', 'm', 'b', 'u', 'i', 'c', 'p']);
                    let flags = &spec[digits.len()..];
                    unrolled = flags.contains('u');
                    let extra = [
                        ('s', 1),
                        ('x', 2),
                        ('m', 4),
                        ('b', 8),
                        ('i', 16 | 1),
                        ('c', 32),
                        ('p', 64),
                    ]
                        .iter()
                        .filter(|(c, _)| flags.contains(*c))
                        .fold(0, |a, (_, b)| a | b);
                    let words = num(digits, "row bytes")? / 16;
                    let per_op = digits == "0";
                    if words == 0 && !per_op {
                        bail!("--variants `{s}`: rows of fewer than 16 bytes");
                    }
                    (words, extra, per_op)
                }
            };
            let shmem_words = match shared {
                None => 0,
                Some(h) if h.starts_with('h') => {
                    handover_words = num(&h[1..], "handed-over words")?;
                    0
                }
                Some(kb) => num(kb, "KB of workgroup memory")?
                    .checked_mul(64)
                    .ok_or_else(|| anyhow::anyhow!("--variants `{s}`: {kb} KB is too much"))?,
            };
            let v = StreamVariant {
                persistent,
                ahead,
                layered,
                row_words,
                rows_per_op,
                unrolled,
                row_extra,
                shmem_words,
                handover_words,
                ..StreamVariant::chain(num(wg, "invocations")?, num(loads, "loads")?, groups)
            };
            if let Some(why) = v.row_flags_conflict() {
                bail!("--variants `{s}`: {why}");
            }
            Ok(v)
        })
        .collect()
}

pub fn run(a: &BenchStreamArgs) -> Result<()> {
    let c = crate::models::presets::synthetic_config(&a.synthetic)
        .ok_or_else(|| anyhow::anyhow!("--synthetic `{}`: unknown shape", a.synthetic))?;
    let variants = match &a.variants {
        Some(s) => parse_variants(s)?,
        None => default_variants(),
    };
    let ctx = super::engine::gpu_context(super::engine::Backend::Gpu, a.adapter.as_deref())?
        .ok_or_else(|| anyhow::anyhow!("bench-stream needs a GPU"))?;
    println!("adapter: {}", ctx.info.name);
    if a.icache {
        return icache(&ctx, a);
    }
    let mut reads = step_reads(&c, 128)?;
    if let Some(kind) = &a.only {
        reads.retain(|r| r.kind == kind);
        if reads.is_empty() {
            bail!("--only `{kind}`: no such read ({})", READ_KINDS.join(", "));
        }
    }
    let step_bytes: u64 = reads.iter().map(|r| r.bytes).sum();
    let probe = StreamProbe::new(&ctx, a.buffer_bytes)?;
    let sizes: Vec<u64> = reads.iter().map(|r| r.bytes).collect();
    let ops = layout(&sizes, probe.words())?;
    let op_rows: Vec<u32> = reads.iter().map(|r| r.row_words).collect();
    // per layer: the attention's read in a dispatch of its own, the reads between two
    // attentions (o_proj, gate_up, down, the next qkv) in one
    let mut layer_breaks: Vec<usize> = (0..reads.len())
        .filter(|&i| reads[i].kind == "attention")
        .flat_map(|i| [i, i + 1])
        .filter(|&i| i > 0 && i < reads.len())
        .collect();
    layer_breaks.dedup();
    let copy = measure_copy_bandwidth(&ctx, 1 << 30, 7)?;
    let peer = super::bench_gpu::peer_copy_bandwidth(&ctx);
    println!(
        "{} Q8_0 step: {} reads, {:.3} GB; probe buffer {:.2} GB; roofline {:.0} GB/s (best copy {:.0}, read {:.0}){}",
        a.synthetic,
        reads.len(),
        step_bytes as f64 / 1e9,
        probe.words() as f64 * 16.0 / 1e9,
        copy.roofline() / 1e9,
        copy.best_copy() / 1e9,
        copy.read_best / 1e9,
        peer.map_or(String::new(), |p| format!(
            " (peers' copy figure {:.0} GB/s)",
            p / 1e9
        )),
    );
    let share = |s: f64| {
        let gbs = step_bytes as f64 / s;
        let peers = peer.map_or(String::new(), |p| {
            format!(" {:5.1}% of peers'", 100.0 * gbs / p)
        });
        format!("{:5.1}% of roofline{peers}", 100.0 * gbs / copy.roofline())
    };
    println!(
        "whole step, best of {} submissions of {} steps:",
        a.passes, a.steps
    );
    // every variant's checksum against a reference's (a plain stream's without scales; with
    // them the same rows and slabs without the input, math, hand-over or loads ahead): a
    // faster-than-possible time is then a real one
    let plain = StreamVariant::chain(256, 4, Groups::PerBytes(16 << 10));
    let want = probe.checksum(&plain, &ops, &op_rows, &[])?.sum;
    let mut best_chain: Option<(f64, StreamVariant)> = None;
    for v in &variants {
        if v.layered && a.only.is_some() {
            println!("  {v:<52} per layer needs the whole step (not with --only)");
            continue;
        }
        let t = probe.time(
            v,
            &ops,
            &op_rows,
            if v.layered { &layer_breaks } else { &[] },
            a.steps,
            a.passes,
        )?;
        if t.gave_up {
            println!("  {v:<52} workgroups not all resident (a wait gave up): no time");
            continue;
        }
        let checked = if StreamProbe::checkable(v, &ops, &op_rows) {
            let breaks = if v.layered { &layer_breaks[..] } else { &[] };
            let reference = if v.row_extra & 1 != 0 {
                let r = StreamProbe::scales_reference(v);
                probe.checksum(&r, &ops, &op_rows, breaks)?.sum
            } else {
                want
            };
            if probe.checksum(v, &ops, &op_rows, breaks)?.sum == reference {
                "  reads checked"
            } else {
                "  READS DIFFER from the reference's: not every word once"
            }
        } else {
            "  (rows do not divide every op: reads not checked)"
        };
        if !v.persistent && best_chain.is_none_or(|b| t.step_s < b.0) {
            best_chain = Some((t.step_s, *v));
        }
        println!(
            "  {v:<52} {:7.3} ms  {:7.1} tok/s  {}  {:6.2} us per read{checked}",
            t.step_s * 1e3,
            1.0 / t.step_s,
            share(t.step_s),
            t.step_s * 1e6 / reads.len() as f64
        );
    }
    // per read: a chain of the same size (every layer's copy of it), by the fastest chain
    if let Some((_, v)) = best_chain {
        println!("each read alone in a chain of its layers' copies ({v}):");
        for name in READ_KINDS {
            let idx: Vec<usize> = (0..reads.len())
                .filter(|&i| reads[i].kind == name)
                .collect();
            let Some(&first) = idx.first() else { continue };
            let chain: Vec<(u64, u64)> = idx.iter().map(|&i| ops[i]).collect();
            let chain_rows: Vec<u32> = idx.iter().map(|&i| op_rows[i]).collect();
            let t = probe.time(&v, &chain, &chain_rows, &[], a.steps, a.passes)?;
            let per = t.step_s / chain.len() as f64;
            println!(
                "  {name:<10} {:8.2} MB  {:7.2} us per dispatch  {:6.0} GB/s",
                reads[first].bytes as f64 / 1e6,
                per * 1e6,
                reads[first].bytes as f64 / per / 1e9
            );
        }
    }
    if let Some(filter) = &a.shader_stats {
        super::bench_gpu::print_shader_stats(&ctx, filter)?;
    }
    Ok(())
}

/// `--icache`: straight-line kernels of several sizes, each after a read larger than any cache
/// and back to back (gpu/icache_probe.rs).
fn icache(ctx: &crate::gpu::GpuContext, a: &BenchStreamArgs) -> Result<()> {
    // 264 workgroups: two per SM on an H200, as the barrier probe; 32 pairs a submission
    let flush = crate::gpu::icache_probe::flush_size(ctx, a.buffer_bytes.min(256 << 20));
    let rows = crate::gpu::icache_probe::measure(
        ctx,
        &[250, 500, 1000, 2000, 4000],
        264,
        flush,
        32,
        a.passes,
    )?;
    println!(
        "\nWhat N straight-line multiply-adds (8 chains) cost a 264-workgroup dispatch beyond an \
         empty one: back to back (warm), after a {:.1} MB read, and after that read and a kernel of \
         6000 other statements; and the same statements behind a branch no run takes (in the \
         binary, not run); best of {} passes:\n",
        flush as f64 / f64::from(1 << 20),
        a.passes.max(1)
    );
    println!(
        "| statements | warm us | after the read us | after the read and other code us | \
         the last - warm us | not run: warm us | not run: after the read and other code us |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            r.statements,
            r.warm_us,
            r.cold_us,
            r.colder_us,
            r.colder_us - r.warm_us,
            r.skipped_warm_us,
            r.skipped_colder_us
        );
    }
    if a.shader_stats.is_some() {
        // what the driver made of each size (the binary's bytes per statement)
        let sources: Vec<(String, String)> = rows
            .iter()
            .map(|r| {
                let n = r.statements;
                (
                    format!("icache {n}"),
                    crate::gpu::icache_probe::code_kernel(n),
                )
            })
            .collect();
        super::bench_gpu::print_stats_table(
            &crate::gpu::shader_stats::driver_statistics_of_sources(&ctx.info.name, &sources)?,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_parse_and_refuse_nonsense() {
        let v = parse_variants("chain:512:4:132,ahead:256:8:64k").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].groups, Groups::Fixed(132));
        assert!(!v[0].persistent);
        assert_eq!(v[1].groups, Groups::PerBytes(64 << 10));
        assert!(v[1].persistent && v[1].ahead);
        for bad in [
            "chain:512:4:132:r00",
            "chain:512:4",
            "fast:512:4:132",
            "chain:x:4:132",
            "chain:512:4:99q",
            "chain:512:1:132:r8sxm",
            "chain:512:1:132:q512",
            "chain:512:1:132:r0sic",
            "persist:1024:2:132:r0p",
            "ahead:1024:1:132:r0p",
            "ahead:1024:2:132:r0pc",
        ] {
            let e = parse_variants(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
        // r0: each matrix's own rows, persistent, unrolled, with a hand-over
        let v = parse_variants("persist:1024:1:132:r0sxmu:h288").unwrap();
        assert!(v[0].rows_per_op && v[0].unrolled && v[0].persistent);
        assert_eq!(
            (v[0].row_words, v[0].row_extra, v[0].handover_words),
            (0, 7, 288)
        );
        let v = parse_variants("chain:512:1:132:r0sxmiu").unwrap();
        assert_eq!(v[0].row_extra, 23);
        let v = parse_variants("persist:1024:1:132:r0sxmuc:h288").unwrap();
        assert_eq!(v[0].row_extra, 39);
        let v = parse_variants("ahead:1024:2:132:r0sxmup:h288").unwrap();
        assert_eq!(v[0].row_extra, 71);
        // (a leading zero is not r0)
        let v = parse_variants("chain:512:1:132:r04096s").unwrap();
        assert!(!v[0].rows_per_op);
        let v = parse_variants("chain:512:1:132:r4096s").unwrap();
        assert!(!v[0].rows_per_op && !v[0].unrolled);
        assert_eq!((v[0].row_words, v[0].row_extra), (256, 1));
    }

    #[test]
    fn the_8b_step_reads_8_04_gb_as_the_peers_count() {
        let c = crate::models::presets::synthetic_config("qwen3-8b").unwrap();
        let reads = step_reads(&c, 0).unwrap();
        let gb = reads.iter().map(|r| r.bytes).sum::<u64>() as f64 / 1e9;
        // peer-baselines.md: Qwen3-8B Q8_0, 8.04 GB per token (the embedding row aside)
        assert!((gb - 8.04).abs() < 0.03, "{gb}");
    }
}
