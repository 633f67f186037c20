//! Shape choices of the GPU kernels, measured per card, and the measurement-only knobs read
//! from the environment (docs/kernels.md lists them).

/// Shape choices of the decode matvecs, measured per card (docs/kernels.md). The environment
/// variables `OMNI_MATVEC_ROWS` and `OMNI_Q8_ROWS` override them for measurements.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// rows one subgroup computes together in the 16-bit matvec (1..=4)
    pub matvec_rows: u32,
    /// the same for the Q8_0 matvec
    pub q8_rows: u32,
    /// rows per subgroup of the Q8_0 expert (MoE) matvecs (H200, 30B-A3B, 64 decoded tokens:
    /// 1 / 4 rows 255 / 302 tok/s)
    pub q8_moe_rows: u32,
    /// invocations per workgroup of the subgroup matvecs (64, 128 or 256)
    pub matvec_wg: u32,
    /// Q8_0 decode with int8 activations (`dot4I8Packed`, as llama.cpp does): 1.6x faster at
    /// Qwen3-Omni-30B-A3B on an H200; adds the activations' rounding to the weights' (tests
    /// bound it); `OMNI_Q8_DOT=0` turns it off
    pub q8_dot: bool,
    /// invocations per workgroup of the Q8_0 matvecs (64, 128 or 256)
    pub q8_wg: u32,
    /// prefill steps of at most this many tokens run matvecs over the tokens (Q8_0: the grouped
    /// expert matvec, and the dense layers' linear_prefill) instead of tiled matmuls, whose
    /// 64-token tiles are mostly padding and few workgroups for short prompts
    pub small_t: u32,
    /// most row groups one subgroup of a Q8_0 matvec takes in turn (1..=4): every workgroup
    /// first quantises the whole input, so fewer, longer-running workgroups repeat that less
    pub q8_groups: u32,
    /// ... as long as the matvec keeps at least this many workgroups
    pub q8_min_wgs: u32,
    /// Q8_0 matvecs get their row length as a pipeline constant (fixed loop trip counts the
    /// compiler unrolls, more weight loads in flight); `OMNI_Q8_FIXED_K=0` reads it at run time
    pub q8_fixed_k: bool,
    /// decode chains dense layers' Q8_0 matvecs: each writes its output quantised for the next
    /// (gpu/matvec_q8.rs); `OMNI_Q8_CHAIN=0` lets every matvec quantise its own input
    pub q8_chain: bool,
    /// Q8_0 matvecs get the subgroup size as a constant where the adapter has only one
    /// (`OMNI_Q8_FIXED_SG=0`: read at run time)
    pub q8_fixed_sg: bool,
    /// ... starting at the attention, which writes its output quantised for o_proj
    /// (`OMNI_Q8_CHAIN_ATTN=0`: o_proj quantises its own input)
    pub q8_chain_attn: bool,
    /// ... and runs each layer's o_proj, gate_up, down and the next qkv as one dispatch
    /// (matvec_q8_phases.wgsl; `OMNI_Q8_PHASES=1`). Off: on an H200 it ran 305 against 323
    /// tok/s at Qwen3-8B (the phases' hand-over costs what a dispatch boundary does, s5 run
    /// 15); kept for GPUs whose boundaries cost more, such as the Strix Halo target (unmeasured)
    pub q8_phases: bool,
    /// most phases per dispatch (1..=4; `OMNI_Q8_PHASE_MAX`)
    pub q8_phase_max: u32,
    /// The phased dispatch as a persistent kernel: this many workgroups (0: off; they must all
    /// be resident at once, e.g. one per SM: 132 on an H100 SXM / H200) take every phase in turn,
    /// meeting at a device counter between phases (`OMNI_Q8_PERSIST`; turns the phased
    /// dispatch on), with `q8_persist_wg` invocations (`OMNI_Q8_PERSIST_WG`: 256, 512 or
    /// 1024) and `q8_persist_rows` rows per subgroup (`OMNI_Q8_PERSIST_ROWS`)
    pub q8_persist: u32,
    pub q8_persist_wg: u32,
    pub q8_persist_rows: u32,
    /// persistent phased dispatch: each workgroup takes its whole share of a phase's rows as
    /// one tile (up to `PHASE_TILE_MAX` rows; its subgroups stream row after row with no
    /// workgroup barrier between) instead of tiles of one row group, each ending in a
    /// barrier and the tile's output quantisation (`OMNI_Q8_PERSIST_TILE=0` for the latter;
    /// s11 on the H200, 8B Q8_0: 327.8 vs 315.7 tok/s)
    pub q8_persist_tile: bool,
    /// phased dispatch: an accumulating phase loads the residual of each subgroup's first row
    /// of a tile beside the input copy instead of just before its store (`OMNI_Q8_PERSIST_EARLY=0` for the latter; s11 on
    /// the H200, 8B Q8_0 persistent: 338.5 vs 333.1 tok/s)
    pub q8_persist_early: bool,
    /// invocations per workgroup of the chained decode matvecs that would otherwise have
    /// fewer than `q8_min_wgs` workgroups (0: none wider; `OMNI_Q8_WIDE_WG` 512 or 1024), with
    /// `q8_wide_rows` rows per subgroup (`OMNI_Q8_WIDE_ROWS`): more subgroups per SM where
    /// the quantised output's 32-row blocks cap the workgroup count (4096 rows: 128)
    pub q8_wide_wg: u32,
    pub q8_wide_rows: u32,
    /// Subgroups sharing each row group of a chain link (matvec_q8.wgsl's KSPLIT; needs a
    /// fixed subgroup size): `OMNI_Q8_KSPLIT` for the default shape, `OMNI_Q8_WIDE_KSPLIT`
    /// for the wide one. 1: each subgroup takes whole rows.
    pub q8_ksplit: u32,
    pub q8_wide_ksplit: u32,
    /// Q8_0 matvecs whose lanes' trips all land inside the row drop the loops' bounds test
    /// (matvec_q8.wgsl FULL; `OMNI_Q8_FULL_TRIPS`, on for NVIDIA: it slowed the 512 x 2-row
    /// wide shape other adapters keep)
    pub q8_full_trips: bool,
    /// block trips of its first rows a phase loads before waiting for the previous phase
    /// (0..=2; `OMNI_Q8_PREFETCH`; default 0: s6 phased 314.7 / 309.0 / 290.8 tok/s for 0 / 1 /
    /// 2, s11 run 11 persistent 342.9 / 336.7 for 0 / 1 at 8B on the H200; 3 and 4 trips with
    /// one row per subgroup ran 322.5 / 292.3 vs 331.2 for 1, s11 run 4, and were removed)
    pub q8_prefetch: u32,
    /// chained Q8_0 matvecs read their tail's inputs (the residual of each subgroup's first
    /// rows, the next RMSNorm's weights) before the weight stream instead of after it
    /// (matvec_q8.wgsl's EARLY; `OMNI_Q8_EARLY=0`: after). H200, 8B Q8_0 (s13 runs 1, 4):
    /// 352.8-353.9 tok/s against 344.5-346.3
    pub q8_early: bool,
    /// percent of each Q8_0 decode matvec's rows read into the L2 cache by a dispatch running
    /// beside the op before it (gpu/prefetch.rs), in the order o_proj (in every layer kind),
    /// and in the dense chain gate_up, down, the next layer's qkv, the lm_head
    /// (`OMNI_L2_PREFETCH`, e.g. `100,50,0,0,0`)
    pub l2_prefetch: [u32; 5],
    /// decode attention and o_proj in one dispatch (attn_oproj.wgsl) where the attention's
    /// heads and o_proj's workgroups (32 rows each) are at most this many (0: never): o_proj's
    /// workgroups load their weights while the attention runs, then wait for its output on a
    /// device counter (`OMNI_ATTN_OPROJ=workgroups`). It pays where all of them run on the GPU
    /// at once (one per SM): o_proj workgroups that start after the attention stream their
    /// 139 KB on one SM each
    pub attn_oproj_wgs: u32,
    /// ... and then this percent of o_proj's last rows (the workgroups that start after the
    /// attention) read into the L2 cache beside the qkv matvec (`OMNI_L2_PREFETCH_TAIL`)
    pub l2_prefetch_tail: u32,
    /// the Q8_0 down-expert matvec adds the token's weighted slots into the residual in the
    /// row block's last slot workgroup, instead of a `moe_sum` dispatch (`OMNI_MOE_SUM_FOLD=0`:
    /// the dispatch)
    pub moe_sum_fold: bool,
    /// decode MoE routing runs the router in the same dispatch as the routing (moe_router.wgsl)
    /// instead of a router matvec and a `moe_route` dispatch (`OMNI_MOE_ROUTER=0`: those two)
    pub moe_router: bool,
    /// ... whose workgroups load their router rows before the norm's prologue (moe_router.wgsl
    /// PRE; `OMNI_ROUTER_PRE=0`: after it). H200, 30B-A3B Q8_0 (s13 run 5): 395.5-395.7
    /// tok/s against 392.6-393.8
    pub router_pre: bool,
    /// the routing (moe_route, moe_router) gets the expert count as a pipeline constant, so
    /// the rank loop is unrolled (`OMNI_ROUTE_E=1`); off, it is read at run time. H200, s15
    /// runs 7: off is faster although it runs more instructions: 30B-A3B Q8_0 decode
    /// 399.1-399.8 -> 404.8-405.0 tok/s, moe_router 16.9 -> 13.1 us a call and moe_route 12.0
    /// -> 8.7 us (serialised profile). Only the token's last workgroup runs the routing, on
    /// code the step's other kernels have pushed out of the SM's instruction caches, and code
    /// run cold costs ~0.27 us per KB on an H200 (`omni bench-stream --icache`, s15 runs
    /// 12, 15): the unrolled loop's 10 KB more (26.4 vs 16.5 KB, same registers, no stack)
    /// cost ~2.6 us a layer, more than the loop's compares
    pub route_fixed_e: bool,
    /// the decode attention's QK-norms sum their squares in two steps through workgroup
    /// memory instead of each invocation summing the head (decode.wgsl NSPLIT,
    /// `OMNI_ATTN_NSPLIT`; head_dim a multiple of 16)
    pub attn_nsplit: bool,
    /// invocations per moe_router workgroup (32-1024, a power of two): one router row per
    /// subgroup, so fewer invocations spread the rows over more workgroups
    /// (`OMNI_ROUTER_WG`)
    pub router_wg: u32,
    /// tokens per tile of the Q8_0 grouped expert matmul (32 or 64; `OMNI_GATHER_TILE`)
    pub gather_tile: u32,
    /// matmuls of at least this many output tiles are never split along K
    /// (`OMNI_SPLIT_MAX_TILES`)
    pub split_max_tiles: u32,
}

impl Default for Tuning {
    fn default() -> Self {
        // measured on an H200 (docs/benchmarks.md, 2026-11-27): 16-bit 1 / 2 / 4 rows gave
        // 61% / 71% / 66% of copy bandwidth at Qwen3-8B; Q8_0 1 / 2 / 3 / 4 rows 15.5 / 9.0 /
        // 7.9 / 7.4 ms per token
        Tuning {
            matvec_rows: 2,
            q8_rows: 4,
            q8_moe_rows: 4,
            matvec_wg: 256,
            q8_dot: true,
            q8_wg: 256,
            // H200, s3 run 2: 8B 263.9 -> 268.9 tok/s, 30B-A3B 287.1 -> 288.2; 4 groups with only
            // 64 workgroups left too few in flight (234.9)
            q8_groups: 4,
            q8_min_wgs: 264,
            small_t: 128,
            q8_fixed_k: true,
            q8_chain: true,
            q8_fixed_sg: true,
            q8_chain_attn: true,
            q8_early: true,
            q8_phases: false,
            q8_phase_max: 4,
            q8_persist: 0,
            q8_persist_wg: 1024,
            q8_persist_rows: 1,
            q8_persist_tile: true,
            q8_persist_early: true,
            q8_prefetch: 0,
            // H200, s6 runs 3-4: 8B Q8_0 335.4-337.6 -> 340.2-340.8 tok/s (1024 x 1: 336.1;
            // 512 x 1: 326.1; 1024 x 2: 320.4; 512 x 4: 292.6)
            q8_wide_wg: 512,
            q8_wide_rows: 2,
            q8_ksplit: 1,
            q8_wide_ksplit: 1,
            q8_full_trips: false,
            l2_prefetch: [0; 5],
            attn_oproj_wgs: 0,
            l2_prefetch_tail: 0,
            moe_sum_fold: true,
            moe_router: true,
            router_pre: true,
            route_fixed_e: false,
            router_wg: 256,
            attn_nsplit: false,
            gather_tile: 32,
            // H200, session 4: the 30B-A3B o_proj at 500 tokens (128 tiles) split in 3: prefill
            // 2957 -> 3035 tok/s; the 8B's 256-tile matmuls split: -5%
            split_max_tiles: 200,
        }
    }
}

impl Tuning {
    /// The defaults, with the environment's overrides.
    pub fn from_env() -> Self {
        Self::from_env_over(Tuning::default())
    }

    /// The defaults for this adapter (what was measured on its kind of card), with the
    /// environment's overrides.
    pub fn for_adapter(info: &crate::gpu::AdapterSummary) -> Self {
        let mut d = Tuning::default();
        if info.name.contains("NVIDIA") {
            // H200, s8 runs 1-5: Qwen3-8B Q8_0 decode +0.8% (mean 344.7 vs 341.9 tok/s) and
            // 30B-A3B 367.0 -> 372.4 with o_proj read into the L2 cache during the attention
            // (gate_up, down or qkv beside the matvec before them: 292-322, their lines do not
            // survive that matvec's stream)
            d.l2_prefetch = [100, 0, 0, 0, 0];
            // H200 (132 SMs), s9 runs 1-8, Q8_0 decode with o_proj inside the attention's
            // dispatch: Qwen3-0.6B (16 heads + 32 o_proj workgroups) 1115-1120 -> 1189-1192
            // tok/s, 1.7B (16 + 64) 843-846 -> 874-876, 4B (32 + 80) 500 -> 513-514,
            // Qwen3-Omni-30B-A3B (32 + 64) 386.7-389.2 -> 393.6-395.8; Qwen3-8B (32 + 128: 28
            // start only after the attention) 343.1-346.2 -> 341.9-345.1. Other NVIDIA cards:
            // unmeasured (their SM counts differ), off
            // H200, s14 runs 1-3: two subgroups per row group in the default-shape links
            // (gate_up, lm_head: half of a row's trips per lane; their register counts did
            // not drop, 67 -> 65, s14 run 5):
            // Qwen3-8B Q8_0 352.8-353.9 -> 354.5-355.4 tok/s (gate_up 33.4 -> 31.9 us, lm_head
            // 157.8 -> 150.5 us), 30B-A3B 396.7 / 397.5 -> 399.1 / 399.6; 4 ways, or 2-8 in the
            // wide links: slower (or unchained: gate_up's 64-row blocks no longer fit)
            d.q8_ksplit = 2;
            // H200, s14 runs 6-7: the wide links (qkv, o_proj, down: fewer than 264
            // workgroups at the default shape) at 1024 invocations, 4 rows per row group and
            // 4 subgroups per row group, with FULL loops: 8B Q8_0 351.6-353.2 -> 355.7-355.8
            // tok/s (down 21.8 -> 21.0 us, o_proj 9.4 -> 9.1); 30B-A3B level (398.8-400.1)
            d.q8_wide_wg = 1024;
            d.q8_wide_rows = 4;
            d.q8_wide_ksplit = 4;
            d.q8_full_trips = true;
            let sms_132 = info.name.contains("H100") || info.name.contains("H200");
            d.attn_oproj_wgs = if sms_132 { 132 } else { 0 };
            // H200, s15 runs 5-7: the fused MoE router at 128 invocations (4 router rows a
            // workgroup, 32 workgroups for 128 experts): 30B-A3B Q8_0 398.4-402.0 ->
            // 402.2-404.9 tok/s, with the run-time expert count 404.8-405.0 -> 406.2 (32 or
            // 64 invocations: 376-394; 512: level)
            d.router_wg = 128;
            // H200, s15 run 17: the QK-norms' sums of squares in two steps (less code run once
            // per dispatch; 110 -> 102 registers): 30B-A3B Q8_0 407.3-407.6 -> 412.0-412.4
            // tok/s (attn_oproj), 8B level (its attention sits beside the o_proj prefetch)
            d.attn_nsplit = true;
        }
        Self::from_env_over(d)
    }

    fn from_env_over(d: Tuning) -> Self {
        let num = |key: &str| std::env::var(key).ok().and_then(|v| v.parse::<u32>().ok());
        let get = |key: &str, ok: &[u32], default: u32| {
            num(key).filter(|v| ok.contains(v)).unwrap_or(default)
        };
        // a switch: set and not "0" is on
        let flag = |key: &str, default: bool| std::env::var(key).map_or(default, |v| v != "0");
        Tuning {
            matvec_rows: get("OMNI_MATVEC_ROWS", &[1, 2, 3, 4], d.matvec_rows),
            q8_rows: get("OMNI_Q8_ROWS", &[1, 2, 3, 4], d.q8_rows),
            q8_moe_rows: get("OMNI_Q8_MOE_ROWS", &[1, 2, 3, 4], d.q8_moe_rows),
            matvec_wg: get("OMNI_MATVEC_WG", &[64, 128, 256], d.matvec_wg),
            q8_dot: flag("OMNI_Q8_DOT", d.q8_dot),
            q8_wg: get("OMNI_Q8_WG", &[64, 128, 256], d.q8_wg),
            q8_groups: get("OMNI_Q8_GROUPS", &[1, 2, 3, 4], d.q8_groups),
            q8_min_wgs: num("OMNI_Q8_MIN_WGS").unwrap_or(d.q8_min_wgs),
            q8_fixed_k: flag("OMNI_Q8_FIXED_K", d.q8_fixed_k),
            q8_chain: flag("OMNI_Q8_CHAIN", d.q8_chain),
            q8_fixed_sg: flag("OMNI_Q8_FIXED_SG", d.q8_fixed_sg),
            q8_phase_max: get("OMNI_Q8_PHASE_MAX", &[1, 2, 3, 4], d.q8_phase_max),
            q8_persist: num("OMNI_Q8_PERSIST").unwrap_or(d.q8_persist),
            q8_persist_wg: get("OMNI_Q8_PERSIST_WG", &[256, 512, 1024], d.q8_persist_wg),
            q8_persist_rows: get("OMNI_Q8_PERSIST_ROWS", &[1, 2, 3, 4], d.q8_persist_rows),
            q8_persist_tile: flag("OMNI_Q8_PERSIST_TILE", d.q8_persist_tile),
            q8_persist_early: flag("OMNI_Q8_PERSIST_EARLY", d.q8_persist_early),
            q8_prefetch: get("OMNI_Q8_PREFETCH", &[0, 1, 2], d.q8_prefetch),
            q8_wide_wg: get("OMNI_Q8_WIDE_WG", &[0, 512, 1024], d.q8_wide_wg),
            q8_wide_rows: get("OMNI_Q8_WIDE_ROWS", &[1, 2, 3, 4], d.q8_wide_rows),
            q8_ksplit: get("OMNI_Q8_KSPLIT", &[1, 2, 4, 8], d.q8_ksplit),
            q8_wide_ksplit: get("OMNI_Q8_WIDE_KSPLIT", &[1, 2, 4, 8], d.q8_wide_ksplit),
            q8_full_trips: flag("OMNI_Q8_FULL_TRIPS", d.q8_full_trips),
            q8_phases: flag("OMNI_Q8_PHASES", d.q8_phases),
            q8_chain_attn: flag("OMNI_Q8_CHAIN_ATTN", d.q8_chain_attn),
            q8_early: flag("OMNI_Q8_EARLY", d.q8_early),
            l2_prefetch: std::env::var("OMNI_L2_PREFETCH")
                .ok()
                .and_then(|v| {
                    let p: Vec<u32> = v.split(',').filter_map(|x| x.parse().ok()).collect();
                    (p.len() == 5 && p.iter().all(|&x| x <= 100))
                        .then(|| [p[0], p[1], p[2], p[3], p[4]])
                })
                .unwrap_or(d.l2_prefetch),
            l2_prefetch_tail: num("OMNI_L2_PREFETCH_TAIL")
                .filter(|&p| p <= 100)
                .unwrap_or(d.l2_prefetch_tail),
            attn_oproj_wgs: num("OMNI_ATTN_OPROJ").unwrap_or(d.attn_oproj_wgs),
            moe_sum_fold: flag("OMNI_MOE_SUM_FOLD", d.moe_sum_fold),
            moe_router: flag("OMNI_MOE_ROUTER", d.moe_router),
            router_pre: flag("OMNI_ROUTER_PRE", d.router_pre),
            route_fixed_e: flag("OMNI_ROUTE_E", d.route_fixed_e),
            router_wg: get(
                "OMNI_ROUTER_WG",
                &[32, 64, 128, 256, 512, 1024],
                d.router_wg,
            ),
            gather_tile: get("OMNI_GATHER_TILE", &[32, 64], d.gather_tile),
            split_max_tiles: num("OMNI_SPLIT_MAX_TILES").unwrap_or(d.split_max_tiles),
            small_t: num("OMNI_SMALL_T").unwrap_or(d.small_t),
            attn_nsplit: flag("OMNI_ATTN_NSPLIT", d.attn_nsplit),
        }
    }
}

/// Measurement-only knobs, read once with the `Kernels`: they take work out of the real decode
/// step so `omni bench` shows what it cost there. The output is then wrong by construction;
/// never set outside a bench.
#[derive(Debug, Clone, Default)]
pub(crate) struct DebugKnobs {
    /// `OMNI_DEBUG_SKIP` (`,`-separated): ops whose "name@shape" (e.g. `attn_decode`,
    /// `matvec_q8@4096x12288`) starts with one of these are not dispatched
    skip: Vec<String>,
    /// `OMNI_DEBUG_NOP` (shader names: `attn_decode`, `matvec_q8`, `l2_prefetch`): their
    /// workgroups return at once, so the dispatch keeps its bindings and barriers but does no
    /// work (what a dispatch boundary costs by itself); `matvec_q8_tail`: the chained Q8_0
    /// matvecs (`matvec_q8_linked`) make their rows' sums but neither store nor quantise them
    nop: Vec<String>,
    /// `OMNI_DEBUG_ATTN_STOP` (1-3, else 0): decode.wgsl's STOP, the stage after which the
    /// decode attention returns
    pub attn_stop: u32,
    /// `OMNI_DEBUG_OPROJ_MODE` (1-5, else 0): attn_oproj.wgsl's OMODE (o_proj not waiting,
    /// the attention or o_proj or both left out, o_proj's weights loaded after its wait)
    pub oproj_mode: u32,
    /// `OMNI_DEBUG_PERSIST_MODE` (1-127, else 0): matvec_q8_phases.wgsl's PMODE (measured in
    /// its persistent form; the plain phased dispatch takes it too, but for its release
    /// barrier, which bits 4 and 32 leave in), bits leaving out the
    /// phases' waits (1), their copies of the input (2), the storage barriers around the
    /// hand-over (4), the residual's load of an accumulating row (8), the output's
    /// quantisation (16), only the release barrier (32), only the acquire barrier (64)
    pub persist_mode: u32,
    /// `OMNI_DEBUG_ROUTER_STOP` (1-5, else 0): moe_router.wgsl's STOP: its workgroups return
    /// after the logits (1), the last after the count (2) or after reading the logits back
    /// (3), or all at once (4), and the step then routes with the ids it last had; or it routes
    /// and then writes the fixed experts 0, 16, 32, .. as the ids (5)
    pub router_stop: u32,
}

impl DebugKnobs {
    pub fn from_env() -> Self {
        let list = |key: &str| {
            std::env::var(key)
                .map(|v| {
                    v.split(',')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        // a stage or mode number in 1..=max, else 0 (unset, unparsable or out of range)
        let ranged = |key: &str, max: u32| {
            std::env::var(key)
                .ok()
                .and_then(|v| v.parse::<u32>().ok())
                .filter(|v| (1..=max).contains(v))
                .unwrap_or(0)
        };
        DebugKnobs {
            skip: list("OMNI_DEBUG_SKIP"),
            nop: list("OMNI_DEBUG_NOP"),
            attn_stop: ranged("OMNI_DEBUG_ATTN_STOP", 3),
            oproj_mode: ranged("OMNI_DEBUG_OPROJ_MODE", 5),
            persist_mode: ranged("OMNI_DEBUG_PERSIST_MODE", 127),
            router_stop: ranged("OMNI_DEBUG_ROUTER_STOP", 5),
        }
    }

    /// Whether the op `name` with `detail` (its shape first) is left out of the step.
    pub fn skips(&self, name: &str, detail: &str) -> bool {
        !self.skip.is_empty() && {
            let shape = detail.split(' ').next().unwrap_or("");
            let full = format!("{name}@{shape}");
            self.skip.iter().any(|s| full.starts_with(s.as_str()))
        }
    }

    /// Whether the shader `name` is built to return at once (only shaders with a NOP constant).
    pub fn nop(&self, name: &str) -> bool {
        ["attn_decode", "matvec_q8", "l2_prefetch"].contains(&name)
            && self.nop.iter().any(|s| s == name)
    }

    /// Whether the chained Q8_0 matvecs leave their tails out (`matvec_q8_tail` in
    /// `OMNI_DEBUG_NOP`: matvec_q8.wgsl's NOTAIL).
    pub fn q8_no_tail(&self) -> bool {
        self.nop.iter().any(|s| s == "matvec_q8_tail")
    }
}
