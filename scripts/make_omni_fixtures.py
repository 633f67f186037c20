#!/usr/bin/env python3
"""Generate the Qwen3-MoE and Qwen3-Omni (thinker + audio encoder) reference fixtures.

Run (from anywhere):
    /opt/ref-venv/bin/python scripts/make_omni_fixtures.py            # everything
    /opt/ref-venv/bin/python scripts/make_omni_fixtures.py qwen3_moe  # or: omni
    /opt/ref-venv/bin/python scripts/make_omni_fixtures.py --regen-wavs omni

Needs the packages pinned in scripts/requirements-fixtures.txt, plus `sox` (and `espeak-ng` to
remake the WAVs): apt-get install -y sox espeak-ng. The WAV files under
tests/fixtures/omni/ are committed; they are only (re)made with espeak-ng + sox when missing or
with --regen-wavs. Every reference is computed from the committed WAV files.
Everything else is deterministic (fixed seeds, CPU, float32 references, eager attention and
eager experts): two runs give byte-identical files.

Writes:
    tests/fixtures/qwen3_moe/tiny/{config.json, generation_config.json, model.safetensors,
        reference.safetensors, reference.json}
    tests/fixtures/omni/{short.wav, long.wav, short_44k_stereo.wav}            (only if missing)
    tests/fixtures/omni/tiny/{config.json, model.safetensors, reference.safetensors,
        reference.json}
See tests/fixtures/README.md for the layout of every file.
"""

import hashlib
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import wave

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import (
    PreTrainedTokenizerFast,
    Qwen3MoeConfig,
    Qwen3MoeForCausalLM,
    Qwen3OmniMoeConfig,
    Qwen3OmniMoeForConditionalGeneration,
    Qwen3OmniMoeProcessor,
    WhisperFeatureExtractor,
)
from transformers.models.qwen3_omni_moe import modeling_qwen3_omni_moe as omni_modeling
from transformers.processing_utils import ProcessorMixin

torch.set_num_threads(2)
torch.use_deterministic_algorithms(True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")
OMNI_DIR = os.path.join(FIX, "omni")

N_GREEDY = 32
MARGIN_GOAL = 0.05
# ... each prompt's 32 greedy tokens need >= MIN_DISTINCT distinct ids and no run of more than
# MAX_RUN identical tokens (random tiny models easily collapse into repeating one token)
MIN_DISTINCT = 16
MAX_RUN = 4
MAX_SEED_TRIES = 50
PROMPT_TRIES = 30

NORM_W2 = 1.0 + 1.0 / 12.0  # E[w^2] of a Uniform(0.5, 1.5) norm weight
TARGET_LOGIT_STD = 4.0


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def round_params_to_bf16(model):
    """Round every parameter to bf16 values, kept in float32. Buffers (rotary inv_freq, the
    audio encoder's sinusoidal table) are left alone: they are recomputed in f32 on load."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).to(torch.float32))
    return model


@torch.no_grad()
def greedy_decode(step_logits, ids, n=N_GREEDY, stop=()):
    """Plain greedy decoding with a full forward pass per step (no KV cache, no EOS stop).
    step_logits(seq) -> logits of the last position. Gives up early (returns fewer than n
    tokens) once a token in `stop` is produced (used only by the seed search)."""
    seq = list(ids)
    out, margins = [], []
    for _ in range(n):
        logits = step_logits(seq)
        top = torch.topk(logits, 2)
        out.append(int(top.indices[0]))
        margins.append(float(top.values[0] - top.values[1]))
        seq.append(out[-1])
        if out[-1] in stop:
            break
    return out, margins


def max_run(toks):
    best = run = 1
    for a, b in zip(toks, toks[1:]):
        run = run + 1 if a == b else 1
        best = max(best, run)
    return best


def acceptable(toks, margins, forbidden):
    return (len(toks) == N_GREEDY and min(margins) >= MARGIN_GOAL and not (set(toks) & forbidden)
            and len(set(toks)) >= MIN_DISTINCT and max_run(toks) <= MAX_RUN)


def router_min_gap(router_logits, k):
    """Smallest gap (in softmax probability) between the k-th and (k+1)-th expert over all tokens."""
    p = torch.softmax(router_logits.float(), dim=-1)
    top = torch.topk(p, k + 1, dim=-1).values
    return float((top[:, k - 1] - top[:, k]).min())


def save_reference(out_dir, tensors, meta):
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}
    save_file(tensors, os.path.join(out_dir, "reference.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out_dir, "reference.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


def check_bf16_file(path):
    keys = []
    with safe_open(path, "pt") as f:
        for k in f.keys():
            assert f.get_slice(k).get_dtype() == "BF16", (path, k)
            keys.append(k)
    return keys


def assert_same_state(model_a, model_b):
    sd_a, sd_b = model_a.state_dict(), model_b.state_dict()
    assert sd_a.keys() == sd_b.keys(), set(sd_a) ^ set(sd_b)
    for k in sd_a:
        assert sd_b[k].dtype == torch.float32 and torch.equal(sd_a[k], sd_b[k]), k


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


# ======================================================================================
# shared MoE initialisation
# ======================================================================================


def init_moe_experts(experts, g):
    """experts.gate_up_proj [E, 2I, H] and experts.down_proj [E, H, I] (transformers 5 fused)."""
    h = experts.gate_up_proj.shape[2]
    i = experts.down_proj.shape[2]
    experts.gate_up_proj.normal_(0.0, 1.0 / math.sqrt(h), generator=g)
    experts.down_proj.normal_(0.0, 1.0 / math.sqrt(i), generator=g)


def randomize_module_tree(root, g, embed_std=1.0, lm_heads=(), head_std=None):
    """Re-draw every parameter of `root` (deterministic order of named_modules):
    norm weights U(0.5, 1.5), norm biases N(0, 0.1); Linear / Conv weights N(0, 1/sqrt(fan_in)),
    their biases N(0, 0.1); embeddings N(0, embed_std); fused experts as init_moe_experts;
    routers N(0, 1/sqrt(hidden)); the named LM heads N(0, head_std); anything else (SnakeBeta
    log-alpha/beta, LayerScale, ConvNeXt gamma) U(0.5, 1.5)."""
    done = set()
    nn = torch.nn
    for mname, mod in root.named_modules():
        own = dict(mod.named_parameters(recurse=False))
        if not own:
            continue
        cls = type(mod).__name__
        full = lambda n: f"{mname}.{n}" if mname else n  # noqa: E731
        if isinstance(mod, nn.LayerNorm) or cls.endswith("RMSNorm"):
            own["weight"].uniform_(0.5, 1.5, generator=g)
            if "bias" in own and own["bias"] is not None:
                own["bias"].normal_(0.0, 0.1, generator=g)
        elif isinstance(mod, nn.Linear):
            if mname in lm_heads:
                own["weight"].normal_(0.0, head_std, generator=g)
            else:
                own["weight"].normal_(0.0, 1.0 / math.sqrt(own["weight"].shape[1]), generator=g)
            if "bias" in own:
                own["bias"].normal_(0.0, 0.1, generator=g)
        elif isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d)):
            w = own["weight"]
            fan_in = w[0].numel() if not isinstance(mod, nn.ConvTranspose1d) else w.shape[0] * w.shape[2]
            w.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=g)
            if "bias" in own:
                own["bias"].normal_(0.0, 0.1, generator=g)
        elif isinstance(mod, nn.Embedding):
            own["weight"].normal_(0.0, embed_std, generator=g)
        elif "gate_up_proj" in own:
            init_moe_experts(mod, g)
        elif cls.endswith("TopKRouter"):
            own["weight"].normal_(0.0, 1.0 / math.sqrt(own["weight"].shape[1]), generator=g)
        else:
            for p in own.values():
                p.uniform_(0.5, 1.5, generator=g)
        for n in own:
            done.add(full(n))
    allp = {n for n, _ in root.named_parameters()}
    assert done == allp, allp - done


# ======================================================================================
# qwen3_moe
# ======================================================================================

MOE = dict(
    name="tiny",
    seed=5000,
    config=dict(
        vocab_size=320, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, intermediate_size=96, moe_intermediate_size=40,
        num_experts=6, num_experts_per_tok=3, norm_topk_prob=True, decoder_sparse_step=1,
        mlp_only_layers=[], tie_word_embeddings=False, rms_norm_eps=1e-6,
        max_position_embeddings=40960, bos_token_id=318, eos_token_id=319,
        attention_bias=False, hidden_act="silu", use_sliding_window=False, sliding_window=None,
        max_window_layers=2, attention_dropout=0.0, initializer_range=0.02, use_cache=True,
        output_router_logits=False, router_aux_loss_coef=0.001,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
    ),
    # as Qwen3-30B-A3B's generation_config.json: eos list [<|im_end|>, <|endoftext|>]
    generation=dict(bos_token_id=318, do_sample=True, eos_token_id=[319, 318], pad_token_id=318,
                    temperature=0.6, top_k=20, top_p=0.95),
    prompt_lens=[1, 7, 19],
)


def build_moe(seed):
    cfg = Qwen3MoeConfig(**MOE["config"])
    cfg._attn_implementation = "eager"
    cfg._experts_implementation = "eager"
    torch.manual_seed(seed)
    model = Qwen3MoeForCausalLM(cfg).to(torch.float32).eval()
    g = torch.Generator().manual_seed(seed)
    head_std = TARGET_LOGIT_STD / math.sqrt(cfg.hidden_size * NORM_W2)
    with torch.no_grad():
        randomize_module_tree(model, g, embed_std=1.0, lm_heads=("lm_head",), head_std=head_std)
    return round_params_to_bf16(model)


def moe_published_config(cfg):
    """config.json with exactly the keys of Qwen3-30B-A3B's published config.json
    (transformers 4.51 style: rope_theta / rope_scaling / torch_dtype, num_experts)."""
    c = MOE["config"]
    out = {
        "architectures": ["Qwen3MoeForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": c["bos_token_id"], "decoder_sparse_step": 1, "eos_token_id": c["eos_token_id"],
        "head_dim": c["head_dim"], "hidden_act": "silu", "hidden_size": c["hidden_size"],
        "initializer_range": 0.02, "intermediate_size": c["intermediate_size"],
        "max_position_embeddings": c["max_position_embeddings"],
        "max_window_layers": c["max_window_layers"], "mlp_only_layers": [], "model_type": "qwen3_moe",
        "moe_intermediate_size": c["moe_intermediate_size"], "norm_topk_prob": True,
        "num_attention_heads": c["num_attention_heads"], "num_experts": c["num_experts"],
        "num_experts_per_tok": c["num_experts_per_tok"], "num_hidden_layers": c["num_hidden_layers"],
        "num_key_value_heads": c["num_key_value_heads"], "output_router_logits": False,
        "rms_norm_eps": c["rms_norm_eps"], "rope_scaling": None, "rope_theta": 1000000.0,
        "router_aux_loss_coef": 0.001, "sliding_window": None, "tie_word_embeddings": False,
        "torch_dtype": "bfloat16", "transformers_version": "5.24.0", "use_cache": True,
        "use_sliding_window": False, "vocab_size": c["vocab_size"],
    }
    # every value must agree with what transformers built
    assert cfg.num_experts == out["num_experts"] and cfg.head_dim == out["head_dim"]
    return out


@torch.no_grad()
def moe_forward_capture(model, ids):
    caps = {}

    def hook(key, index=None):
        def fn(_m, _i, out):
            o = out[index] if index is not None else (out[0] if isinstance(out, tuple) else out)
            caps[key] = o.detach().clone()
        return fn

    hs = [model.model.embed_tokens.register_forward_hook(hook("emb")),
          model.model.norm.register_forward_hook(hook("norm"))]
    for l, layer in enumerate(model.model.layers):
        hs.append(layer.register_forward_hook(hook(f"layer{l}")))
        hs.append(layer.mlp.gate.register_forward_hook(hook(f"router{l}", 0)))
    try:
        out = model(torch.tensor([ids]), output_hidden_states=True, output_router_logits=True)
    finally:
        for h in hs:
            h.remove()
    L = len(model.model.layers)
    hidden = [caps["emb"][0]] + [caps[f"layer{l}"][0] for l in range(L)]
    routers = [caps[f"router{l}"] for l in range(L)]
    hsd = out.hidden_states
    assert len(hsd) == L + 1
    for l in range(L):
        assert torch.equal(hsd[l][0], hidden[l]), l
    assert torch.equal(hsd[L][0], caps["norm"][0])
    assert len(out.router_logits) == L
    for l in range(L):
        assert torch.equal(out.router_logits[l], routers[l]), l
    return out.logits[0], hidden, caps["norm"][0], routers


@torch.no_grad()
def build_qwen3_moe():
    spec = MOE
    eos = {spec["config"]["eos_token_id"]} | set(spec["generation"]["eos_token_id"])
    vocab = spec["config"]["vocab_size"]
    print("[qwen3_moe] searching seed ...")
    for k in range(MAX_SEED_TRIES):
        seed = spec["seed"] + k
        model = build_moe(seed)
        step = lambda s: model(torch.tensor([s])).logits[0, -1]  # noqa: E731
        rng = random.Random(seed)
        prompts = []
        for n in spec["prompt_lens"]:
            for _ in range(PROMPT_TRIES):
                p = [rng.randrange(vocab) for _ in range(n)]
                if acceptable(*greedy_decode(step, p), eos):
                    prompts.append(p)
                    break
            else:
                break
        ok = len(prompts) == len(spec["prompt_lens"])
        print(f"  seed {seed}: {'ok' if ok else 'rejected'}")
        if ok:
            break
    else:
        raise RuntimeError("no seed found for qwen3_moe")

    out_dir = os.path.join(FIX, "qwen3_moe", spec["name"])
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    build_moe(seed).to(torch.bfloat16).save_pretrained(out_dir)
    for fn in os.listdir(out_dir):
        assert fn in ("config.json", "generation_config.json", "model.safetensors"), fn
    keys = check_bf16_file(os.path.join(out_dir, "model.safetensors"))
    L, E = spec["config"]["num_hidden_layers"], spec["config"]["num_experts"]
    for l in range(L):
        assert f"model.layers.{l}.mlp.gate.weight" in keys
        for e in range(E):
            for w in ("gate_proj", "up_proj", "down_proj"):
                assert f"model.layers.{l}.mlp.experts.{e}.{w}.weight" in keys, (l, e, w)
    assert not any("gate_up_proj" in k for k in keys), "fused expert tensors in the file"
    write_json(os.path.join(out_dir, "config.json"), moe_published_config(model.config))
    gen = dict(spec["generation"], transformers_version="5.24.0")
    write_json(os.path.join(out_dir, "generation_config.json"), dict(sorted(gen.items())))

    # Reload the published-style checkpoint (legacy config keys, per-expert 2-D tensors) as f32.
    ref = Qwen3MoeForCausalLM.from_pretrained(
        out_dir, dtype=torch.float32, attn_implementation="eager", experts_implementation="eager").eval()
    assert ref.config._experts_implementation == "eager"
    assert ref.config.rope_parameters["rope_theta"] == 1e6 and ref.config.num_experts == E
    assert ref.config.norm_topk_prob is True and ref.config.head_dim == 16
    assert_same_state(model, ref)

    tensors, pj = {}, []
    step = lambda s: ref(torch.tensor([s])).logits[0, -1]  # noqa: E731
    K = spec["config"]["num_experts_per_tok"]
    for i, ids in enumerate(prompts):
        logits, hidden, fnorm, routers = moe_forward_capture(ref, ids)
        tensors[f"p{i}.logits"] = logits
        for l, h in enumerate(hidden):
            tensors[f"p{i}.hidden.{l}"] = h
        tensors[f"p{i}.final_norm"] = fnorm
        for l, r in enumerate(routers):
            tensors[f"p{i}.router.{l}"] = r
        toks, margins = greedy_decode(step, ids)
        assert acceptable(toks, margins, eos), (i, toks, min(margins))
        gen_ids = ref.generate(
            torch.tensor([ids]), do_sample=False, max_new_tokens=N_GREEDY, min_new_tokens=N_GREEDY,
            eos_token_id=None, pad_token_id=0, temperature=None, top_p=None, top_k=None,
        )[0, len(ids):].tolist()
        assert gen_ids == toks, (i, gen_ids, toks)
        # grouped_mm experts (the transformers default) must agree closely with eager
        ref.set_experts_implementation("grouped_mm")
        try:
            alt = ref(torch.tensor([ids])).logits[0]
        finally:
            ref.set_experts_implementation("eager")
        gap = min(router_min_gap(r, K) for r in routers)
        pj.append({"ids": ids, "greedy": toks, "greedy_min_margin": min(margins),
                   "router_min_topk_gap": gap})
        print(f"  p{i}: T={len(ids)} margin {min(margins):.4f} router gap {gap:.4f} "
              f"logit std {float(logits.std(-1).mean()):.2f} grouped_mm max|diff| "
              f"{float((alt - logits).abs().max()):.2e}")
    save_reference(out_dir, tensors, {"model": "qwen3_moe/tiny", "seed": seed, "prompts": pj})
    return seed, pj


# ======================================================================================
# Qwen3-Omni: audio
# ======================================================================================

ESPEAK = ["espeak-ng", "-v", "en", "-s", "160", "-w"]
CLIPS = {
    "short": "What is the capital of France?",
    "long": ("Good morning. Could you tell me what the weather will be like tomorrow, "
             "and whether I should take an umbrella to work?"),
}
WAV_SHORT = os.path.join(OMNI_DIR, "short.wav")
WAV_LONG = os.path.join(OMNI_DIR, "long.wav")
WAV_SHORT_44K = os.path.join(OMNI_DIR, "short_44k_stereo.wav")


def tool_version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[0]
    except (OSError, subprocess.CalledProcessError):
        return None


def make_wavs(force):
    paths = {"short": WAV_SHORT, "long": WAV_LONG}
    if not force and all(os.path.exists(p) for p in (*paths.values(), WAV_SHORT_44K)):
        return
    os.makedirs(OMNI_DIR, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in CLIPS.items():
            raw = os.path.join(tmp, f"{name}_espeak.wav")  # 22050 Hz mono 16-bit
            subprocess.run(ESPEAK + [raw, text], check=True)
            subprocess.run(["sox", "-D", raw, "-r", "16000", "-c", "1", "-b", "16", paths[name]], check=True)
    subprocess.run(["sox", "-D", WAV_SHORT, "-r", "44100", "-c", "2", "-b", "16", WAV_SHORT_44K], check=True)
    print("[wav] written with", tool_version(["espeak-ng", "--version"]), "/", tool_version(["sox", "--version"]))


def read_wav(path):
    """16-bit PCM WAV -> float32 [channels, samples] in [-1, 1) (int16 / 32768), sample rate."""
    with wave.open(path, "rb") as w:
        assert w.getsampwidth() == 2 and w.getcomptype() == "NONE"
        ch, sr, n = w.getnchannels(), w.getframerate(), w.getnframes()
        data = np.frombuffer(w.readframes(n), dtype="<i2").reshape(n, ch).T
    return (data.astype(np.float32) / 32768.0), sr


# ======================================================================================
# Qwen3-Omni: tiny model
# ======================================================================================

# Tiny thinker vocabulary (400 ids). The special tokens keep their order / relative offsets from
# the real vocabulary: tiny id = real id - 151643 + 360 for ids >= 151643.
VOCAB = 400
SPECIAL = {
    "<|endoftext|>": 360,    # real 151643
    "<|im_start|>": 361,     # real 151644
    "<|im_end|>": 362,       # real 151645 (thinker EOS)
    "<|vision_start|>": 369,  # real 151652
    "<|vision_end|>": 370,   # real 151653
    "<|image_pad|>": 372,    # real 151655
    "<|video_pad|>": 373,    # real 151656
    "<|audio_start|>": 386,  # real 151669
    "<|audio_end|>": 387,    # real 151670
    "<tts_pad>": 388,        # real 151671
    "<tts_text_bos>": 389,   # real 151672
    "<tts_text_eod>": 390,   # real 151673
    "<|audio_pad|>": 392,    # real 151675
}
ROLE = {"system": 48, "user": 72, "assistant": 91, "\n": 198}  # real 8948, 872, 77091, 198
IM_START, IM_END, NL = SPECIAL["<|im_start|>"], SPECIAL["<|im_end|>"], ROLE["\n"]
USER, ASSISTANT = ROLE["user"], ROLE["assistant"]
AUDIO_START, AUDIO_END, AUDIO_PAD = SPECIAL["<|audio_start|>"], SPECIAL["<|audio_end|>"], SPECIAL["<|audio_pad|>"]
VISION_START, VISION_END, IMAGE_PAD = SPECIAL["<|vision_start|>"], SPECIAL["<|vision_end|>"], SPECIAL["<|image_pad|>"]
# Generated tokens must avoid the EOS ids (<|im_end|>, <|endoftext|>) and every multimodal
# marker / placeholder id: a generated <|audio_pad|> fed back through a full forward pass would no
# longer match the number of audio features, and a generated <|audio_start|> or
# <|vision_start|> changes what get_rope_index parses.
FORBIDDEN = {SPECIAL[k] for k in ("<|endoftext|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                                  "<|image_pad|>", "<|video_pad|>", "<|audio_start|>", "<|audio_end|>",
                                  "<|audio_pad|>")}
CONTENT_IDS = [i for i in range(360) if i not in ROLE.values()]

MROPE = {"rope_type": "default", "mrope_section": [4, 2, 2], "interleaved": True,
         "mrope_interleaved": True, "rope_theta": 1000000.0}
OMNI_SEED = 6000
OMNI_CONFIG = dict(
    thinker_config=dict(
        audio_config=dict(
            num_mel_bins=128, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=64,
            d_model=32, n_window=50, n_window_infer=400, output_dim=64, downsample_hidden_size=8,
            conv_chunksize=500, max_source_positions=1500, activation_function="gelu",
            scale_embedding=False),
        vision_config=dict(
            depth=2, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=64,
            num_position_embeddings=16, deepstack_visual_indexes=[0, 1], patch_size=16,
            temporal_patch_size=2, spatial_merge_size=2, in_channels=3, hidden_act="gelu_pytorch_tanh"),
        text_config=dict(
            vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16, moe_intermediate_size=40,
            num_experts=6, num_experts_per_tok=3, norm_topk_prob=True, decoder_sparse_step=1,
            mlp_only_layers=[], rms_norm_eps=1e-6, max_position_embeddings=65536,
            rope_parameters=MROPE, attention_bias=False, hidden_act="silu", sliding_window=None),
        audio_token_id=AUDIO_PAD, image_token_id=IMAGE_PAD, video_token_id=SPECIAL["<|video_pad|>"],
        audio_start_token_id=AUDIO_START, audio_end_token_id=AUDIO_END,
        vision_start_token_id=VISION_START, vision_end_token_id=VISION_END, user_token_id=USER,
        position_id_per_seconds=13, seconds_per_chunk=2, tie_word_embeddings=False),
    talker_config=dict(
        text_config=dict(
            vocab_size=256, hidden_size=32, intermediate_size=32, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1, head_dim=16, moe_intermediate_size=16,
            num_experts=4, num_experts_per_tok=2, norm_topk_prob=True,
            shared_expert_intermediate_size=24, rope_parameters=MROPE, max_position_embeddings=65536),
        code_predictor_config=dict(
            vocab_size=128, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
            num_attention_heads=2, num_key_value_heads=1, head_dim=16, num_code_groups=4,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
        num_code_groups=4, thinker_hidden_size=64, accept_hidden_layer=1,
        codec_pad_id=200, codec_bos_id=201, codec_eos_token_id=202, codec_nothink_id=207,
        codec_think_bos_id=208, codec_think_eos_id=209,
        speaker_id={"chelsie": 240, "ethan": 241, "aiden": 242},
        audio_token_id=AUDIO_PAD, image_token_id=IMAGE_PAD, video_token_id=SPECIAL["<|video_pad|>"],
        vision_start_token_id=VISION_START, audio_start_token_id=AUDIO_START, audio_end_token_id=AUDIO_END,
        position_id_per_seconds=13, spatial_merge_size=2, seconds_per_chunk=2),
    code2wav_config=dict(
        codebook_size=128, hidden_size=32, num_attention_heads=2, num_key_value_heads=2,
        intermediate_size=48, num_hidden_layers=1, num_quantizers=4, decoder_dim=32,
        sliding_window=72, upsample_rates=[8, 5, 4, 3], upsampling_ratios=[2, 2]),
    enable_audio_output=True,
    im_start_token_id=IM_START, im_end_token_id=IM_END, tts_pad_token_id=SPECIAL["<tts_pad>"],
    tts_bos_token_id=SPECIAL["<tts_text_bos>"], tts_eos_token_id=SPECIAL["<tts_text_eod>"],
    system_token_id=ROLE["system"], user_token_id=USER, assistant_token_id=ASSISTANT,
)


def build_omni(seed):
    cfg = Qwen3OmniMoeConfig(**OMNI_CONFIG)
    torch.manual_seed(seed)
    model = Qwen3OmniMoeForConditionalGeneration(cfg).to(torch.float32).eval()
    model.set_attn_implementation("eager")
    model.set_experts_implementation("eager")
    g = torch.Generator().manual_seed(seed)
    H = cfg.thinker_config.text_config.hidden_size
    head_std = TARGET_LOGIT_STD / math.sqrt(H * NORM_W2)
    with torch.no_grad():
        randomize_module_tree(model, g, embed_std=1.0, lm_heads=("thinker.lm_head",), head_std=head_std)
    return round_params_to_bf16(model)


def legacy_rope(rp):
    """transformers-5 rope_parameters -> the published (4.57) keys rope_theta + rope_scaling."""
    scaling = {k: v for k, v in rp.items() if k != "rope_theta"}
    if "mrope_section" in scaling:
        scaling["type"] = scaling["rope_type"]
    theta = rp["rope_theta"]
    return (int(theta) if float(theta).is_integer() else theta), dict(sorted(scaling.items()))


def omni_published_config(path):
    """Rewrite transformers 5.24's config.json into the published Qwen3-Omni layout:
    rope_parameters -> rope_theta + rope_scaling (text, talker text, code predictor, code2wav),
    talker `num_local_experts` -> `num_experts`, dtype bfloat16, model_type of the talker."""
    with open(path) as f:
        cfg = json.load(f)
    noise = ("_name_or_path", "architectures", "chunk_size_feed_forward", "id2label", "label2id",
             "is_encoder_decoder", "output_attentions", "output_hidden_states", "problem_type",
             "return_dict", "dtype")

    def clean(d):
        for k in noise:
            d.pop(k, None)
        return d

    th = cfg["thinker_config"]
    for sub in ("audio_config", "vision_config", "text_config"):
        clean(th[sub])
    tc = th["text_config"]
    tc["rope_theta"], tc["rope_scaling"] = legacy_rope(tc.pop("rope_parameters"))
    # keys of the published thinker text config that transformers 5 does not write
    tc.update({"shared_expert_intermediate_size": 0, "use_qk_norm": True, "use_sliding_window": False})
    th["vision_config"].pop("rope_parameters")  # not in the published config (axial, theta 10000)
    tk = cfg["talker_config"]
    tk["model_type"] = "qwen3_omni_moe_talker"
    for sub in ("text_config", "code_predictor_config"):
        clean(tk[sub])
        tk[sub]["rope_theta"], scaling = legacy_rope(tk[sub].pop("rope_parameters"))
        tk[sub]["rope_scaling"] = scaling if "mrope_section" in scaling else None
    tk["text_config"]["num_experts"] = tk["text_config"].pop("num_local_experts")
    tk["text_config"]["use_sliding_window"] = False
    c2 = cfg["code2wav_config"]
    c2["rope_theta"], _ = legacy_rope(c2.pop("rope_parameters"))
    cfg["dtype"] = "bfloat16"
    th["dtype"] = "bfloat16"

    def sort(d):
        return {k: sort(v) if isinstance(v, dict) and k.endswith("config") else v for k, v in sorted(d.items())}

    write_json(path, sort(cfg))


def make_tiny_tokenizer():
    """A word-level tokenizer over the 400 tiny ids (every id is one added token) so that the
    real Qwen3OmniMoeProcessor can expand placeholders. Non-special ids are spelled <tN>."""
    from tokenizers import AddedToken, Tokenizer, models

    names = {v: k for k, v in {**SPECIAL, **ROLE}.items()}
    vocab = {names.get(i, f"<t{i}>"): i for i in range(VOCAB)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<t0>"))
    tk.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIAL])
    tk.add_tokens([AddedToken(n, special=False, normalized=False) for n in vocab if n not in SPECIAL])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, extra_special_tokens={
        "image_token": "<|image_pad|>", "audio_token": "<|audio_pad|>", "video_token": "<|video_pad|>",
        "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>",
        "audio_bos_token": "<|audio_start|>", "audio_eos_token": "<|audio_end|>"})
    id2name = {i: n for n, i in vocab.items()}
    return tok, id2name


class _NoVision:
    """Stand-in image/video processor: the reference venv has no torchvision/PIL, and audio
    processing never touches them."""
    merge_size = 2
    model_input_names = []


def make_processor():
    # Qwen3-Omni's preprocessor_config.json: feature_size 128, hop 160, n_fft 400, chunk_length 300
    # (n_samples 4,800,000), dither 0, padding_value 0, return_attention_mask true.
    fe = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, hop_length=160, chunk_length=300,
                                 n_fft=400, padding_value=0.0, dither=0.0, return_attention_mask=True)
    tok, id2name = make_tiny_tokenizer()
    orig = ProcessorMixin.check_argument_for_proper_class

    def check(self, name, arg):
        if name in ("image_processor", "video_processor"):
            return type(arg)
        return orig(self, name, arg)

    ProcessorMixin.check_argument_for_proper_class = check
    try:
        proc = Qwen3OmniMoeProcessor(image_processor=_NoVision(), video_processor=_NoVision(),
                                     feature_extractor=fe, tokenizer=tok)
    finally:
        ProcessorMixin.check_argument_for_proper_class = orig
    return proc, fe, id2name


def ids_to_text(ids, id2name):
    return "".join(id2name[i] for i in ids)


def n_audio_tokens(frames, n_window=50):
    """13 per full 100-frame chunk plus ceil-ish of the tail through three stride-2 convs."""
    full, tail = divmod(frames, 2 * n_window)
    t = tail
    for _ in range(3):
        t = (t - 1) // 2 + 1 if t > 0 else 0
    return 13 * full + t


def audio_user_turn(n_tokens, content):
    return ([IM_START, USER, NL, AUDIO_START] + [AUDIO_PAD] * n_tokens + [AUDIO_END] + content
            + [IM_END, NL, IM_START, ASSISTANT, NL])


@torch.no_grad()
def audio_tower_capture(tower, mel):
    """mel [128, T] -> (output [N, out], embed [N, d], layer outputs, conv_out [chunks, 13, d])."""
    caps = {}

    def pre(_m, args, kwargs):
        caps["embed"] = (args[0] if args else kwargs["hidden_states"]).detach().clone()

    def hook(key):
        def fn(_m, _i, out):
            caps[key] = (out[0] if isinstance(out, tuple) else out).detach().clone()
        return fn

    hs = [tower.layers[0].register_forward_pre_hook(pre, with_kwargs=True),
          tower.conv_out.register_forward_hook(hook("conv_out"))]
    for l, layer in enumerate(tower.layers):
        hs.append(layer.register_forward_hook(hook(f"layer{l}")))
    try:
        out = tower(mel, feature_lens=torch.tensor([mel.shape[1]])).last_hidden_state
    finally:
        for h in hs:
            h.remove()
    return out, caps["embed"], [caps[f"layer{l}"] for l in range(len(tower.layers))], caps["conv_out"]


@torch.no_grad()
def thinker_capture(thinker, **inputs):
    """Full thinker forward with hooks: logits [T, V], hidden (layer-0 input + each layer's raw
    output), final norm output, router logits per layer."""
    lm = thinker.model.language_model
    caps = {}

    def pre(_m, args, kwargs):
        caps["h0"] = (args[0] if args else kwargs["hidden_states"]).detach().clone()

    def hook(key, index=None):
        def fn(_m, _i, out):
            o = out[index] if index is not None else (out[0] if isinstance(out, tuple) else out)
            caps[key] = o.detach().clone()
        return fn

    hs = [lm.layers[0].register_forward_pre_hook(pre, with_kwargs=True),
          lm.norm.register_forward_hook(hook("norm"))]
    for l, layer in enumerate(lm.layers):
        hs.append(layer.register_forward_hook(hook(f"layer{l}")))
        hs.append(layer.mlp.gate.register_forward_hook(hook(f"router{l}", 0)))
    try:
        out = thinker(**inputs, use_cache=False, output_hidden_states=True)
    finally:
        for h in hs:
            h.remove()
    L = len(lm.layers)
    hidden = [caps["h0"][0]] + [caps[f"layer{l}"][0] for l in range(L)]
    hsd = out.hidden_states
    assert len(hsd) == L + 1
    for l in range(L):
        assert torch.equal(hsd[l][0], hidden[l]), l
    assert torch.equal(hsd[L][0], caps["norm"][0])
    return out.logits[0], hidden, caps["norm"][0], [caps[f"router{l}"] for l in range(L)]


def batch_features(mels):
    """Per-clip mels [128, T_i] -> input_features [B, 128, T_max] zero-padded + mask [B, T_max]."""
    tmax = max(m.shape[1] for m in mels)
    feats = torch.zeros(len(mels), 128, tmax)
    mask = torch.zeros(len(mels), tmax, dtype=torch.int32)
    for b, m in enumerate(mels):
        feats[b, :, : m.shape[1]] = m
        mask[b, : m.shape[1]] = 1
    return feats, mask


class Omni:
    """The thinker of a tiny Qwen3-Omni plus the inputs it is evaluated on."""

    def __init__(self, model, mels):
        self.model = model
        self.thinker = model.thinker
        self.mels = mels

    def inputs(self, ids, clips=(), image_grid_thw=None, position_ids=None):
        kw = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}
        if clips:
            kw["input_features"], kw["feature_attention_mask"] = batch_features([self.mels[c] for c in clips])
        if image_grid_thw is not None:
            kw["image_grid_thw"] = torch.tensor(image_grid_thw)
        if position_ids is not None:
            kw["position_ids"] = position_ids
        return kw

    def rope_index(self, ids, clips=(), image_grid_thw=None):
        feats = [self.mels[c].shape[1] for c in clips]
        pos, delta = self.thinker.get_rope_index(
            torch.tensor([ids]), torch.tensor(image_grid_thw) if image_grid_thw is not None else None, None,
            torch.ones(1, len(ids), dtype=torch.long), False,
            torch.tensor(feats) if feats else None, None)
        return pos, delta

    @torch.no_grad()
    def step_fn(self, clips=(), image_grid_thw=None):
        def step(seq):
            kw = self.inputs(seq, clips, image_grid_thw)
            if image_grid_thw is not None:  # no pixels: pass the positions get_rope_index gives
                kw["position_ids"] = self.rope_index(seq, clips, image_grid_thw)[0]
            return self.thinker(**kw, use_cache=False).logits[0, -1]
        return step

    @torch.no_grad()
    def hf_generate(self, ids, clips=(), image_grid_thw=None):
        kw = self.inputs(ids, clips, image_grid_thw)
        out = self.thinker.generate(**kw, do_sample=False, max_new_tokens=N_GREEDY, min_new_tokens=N_GREEDY,
                                    eos_token_id=None, pad_token_id=0, temperature=None, top_p=None,
                                    top_k=None)
        return out[0, len(ids):].tolist()


def omni_search(mels, n_tok):
    """First model seed for which every prompt slot has an acceptable greedy decode."""
    for k in range(MAX_SEED_TRIES):
        seed = OMNI_SEED + k
        om = Omni(build_omni(seed), mels)
        rng = random.Random(seed)
        slots = {}

        def content(n):
            return [rng.choice(CONTENT_IDS) for _ in range(n)]

        makers = [
            ("text", lambda: ([IM_START, USER, NL] + content(2) + [IM_END, NL, IM_START, ASSISTANT, NL], (), None)),
            ("audio_prompt", lambda: (audio_user_turn(n_tok["short"], content(4)), ("short",), None)),
            # turn 2: turn 1 (audio prompt + its first 8 greedy tokens + <|im_end|>\n), then a
            # second user turn with the long clip
            ("turn2", lambda: (slots["audio_prompt"][0] + slots["audio_prompt"][1][:8] + [IM_END, NL]
                               + audio_user_turn(n_tok["long"], content(3)), ("short", "long"), None)),
            # an image placeholder grid (no pixels): positions differ between the 3 axes
            ("mrope", lambda: ([IM_START, USER, NL, VISION_START] + [IMAGE_PAD] * 6 + [VISION_END] + content(3)
                               + [IM_END, NL, IM_START, ASSISTANT, NL], (), [[1, 4, 6]])),
        ]
        for key, make in makers:
            for _ in range(PROMPT_TRIES):
                ids, clips, grid = make()
                toks, margins = greedy_decode(om.step_fn(clips, grid), ids, stop=FORBIDDEN)
                if acceptable(toks, margins, FORBIDDEN):
                    slots[key] = (ids, toks)
                    break
            else:
                break
        ok = len(slots) == 4
        print(f"  seed {seed}: {'ok' if ok else 'rejected (' + ','.join(slots) + ')'}")
        if ok:
            return seed, slots
    raise RuntimeError("no seed found for the omni model")


def check_mrope_layout(thinker):
    """Verify which rotary frequency index each of the 3 position axes drives (interleaved)."""
    rot = thinker.model.language_model.rotary_emb
    half = rot.inv_freq.shape[0]
    pos = torch.zeros(3, 1, 1)
    owner = []
    for axis in range(3):
        p = pos.clone()
        p[axis] = 1000.0
        cos, sin = rot(torch.zeros(1), p)
        assert torch.equal(sin[..., :half], sin[..., half:])  # cat(f, f): rotate_half pairs (j, j+half)
        owner.append([j for j in range(half) if float(sin[0, 0, j]) != 0.0])
    for j in range(half):
        assert sum(j in o for o in owner) == 1, (j, owner)
    layout = "".join("THW"[[j in o for o in owner].index(True)] for j in range(half))
    return layout


@torch.no_grad()
def build_omni_fixture(force_wavs):
    make_wavs(force_wavs)
    proc, fe, id2name = make_processor()

    # ---- audio front end ------------------------------------------------------------
    wavs, mels, audio_meta = {}, {}, {}
    for name, path in (("short", WAV_SHORT), ("long", WAV_LONG)):
        x, sr = read_wav(path)
        assert sr == 16000 and x.shape[0] == 1, (path, sr, x.shape)
        wavs[name] = x[0]
    n_tok = {}
    for name, x in wavs.items():
        # The processor expands one <|audio_pad|> into N; text is spelled with the tiny tokenizer.
        text = ids_to_text(audio_user_turn(1, [5, 6]), id2name)
        out = proc(text=text, audio=[x], return_tensors="pt")
        feats, mask = out["input_features"], out["feature_attention_mask"]
        frames = len(x) // 160
        assert feats.shape == (1, 128, frames) and mask.shape == (1, frames) and bool(mask.all())
        n = int(out["num_audio_tokens"][0]) if "num_audio_tokens" in out else int(
            omni_modeling._get_feat_extract_output_lengths(torch.tensor(frames)))
        assert n == n_audio_tokens(frames) == int(omni_modeling._get_feat_extract_output_lengths(torch.tensor(frames)))
        assert out["input_ids"][0].tolist() == audio_user_turn(n, [5, 6])
        mels[name] = feats[0]
        n_tok[name] = n
        # Traps: the feature extractor's own default pads to n_samples (300 s) and changes the
        # last frames (zero padding instead of reflect padding at the end of the STFT).
        # Trap: the feature extractor's own default (padding="max_length") pads to n_samples
        # (300 s); the mask then counts ceil(samples / 160) frames, not floor, and the last frames'
        # STFT windows see zeros instead of the reflect padding.
        dflt = fe(x, sampling_rate=16000, return_attention_mask=True)
        padded = torch.from_numpy(dflt["input_features"][0])
        pad_frames_mask = int(dflt["attention_mask"].sum())
        pad_diff = float((padded[:, :frames] - feats[0]).abs().max())
        chunks = [100] * (frames // 100) + ([frames % 100] if frames % 100 else [])
        audio_meta[name] = {
            "wav": f"omni/{name}.wav", "wav_sha256": sha256(os.path.join(OMNI_DIR, f"{name}.wav")),
            "samples": len(x), "sample_rate": 16000, "seconds": len(x) / 16000,
            "text": CLIPS[name], "mel_frames": frames, "num_audio_tokens": n,
            "chunk_frames": chunks,
            "tokens_per_chunk": [n_audio_tokens(c) for c in chunks],
            "feature_extractor_default_padding": {
                "input_features_frames": int(padded.shape[1]), "mask_frames": pad_frames_mask,
                "num_audio_tokens_from_mask": n_audio_tokens(pad_frames_mask),
                "max_abs_diff_on_valid_frames": pad_diff},
        }
        print(f"[omni] {name}: {len(x)} samples, {frames} frames, {n} audio tokens; default FE padding: "
              f"mask {pad_frames_mask} frames, max |diff| {pad_diff:.3g}")
    # batching both clips in one processor call pads the short one: its last frames change
    both = proc(text=ids_to_text(audio_user_turn(1, []) + audio_user_turn(1, []), id2name),
                audio=[wavs["short"], wavs["long"]], return_tensors="pt")
    fs = mels["short"].shape[1]
    bm = int(both["feature_attention_mask"][0].sum())
    bdiff = (both["input_features"][0, :, :fs] - mels["short"]).abs()
    audio_meta["short"]["batched_with_long"] = {
        "mask_frames": bm, "num_audio_tokens": n_audio_tokens(bm),
        "max_abs_diff_on_first_frames": float(bdiff.max())}
    assert int(both["feature_attention_mask"][1].sum()) == mels["long"].shape[1]
    print(f"[omni] short batched with long: mask {bm} frames (alone: {fs}), max |diff| {float(bdiff.max()):.3g}")
    # the 44.1 kHz stereo copy: sox back to 16 kHz gives a mel close to mel.short
    x44, sr44 = read_wav(WAV_SHORT_44K)
    assert sr44 == 44100 and x44.shape[0] == 2 and np.array_equal(x44[0], x44[1])
    with tempfile.TemporaryDirectory() as tmp:
        back = os.path.join(tmp, "back.wav")
        subprocess.run(["sox", "-D", WAV_SHORT_44K, "-r", "16000", "-c", "1", "-b", "16", back], check=True)
        xb, _ = read_wav(back)
    fb = proc(text=ids_to_text(audio_user_turn(1, []), id2name), audio=[xb[0]], return_tensors="pt")["input_features"][0]
    n_cmp = min(fb.shape[1], fs)
    audio_meta["short_44k_stereo"] = {
        "wav": "omni/short_44k_stereo.wav", "wav_sha256": sha256(WAV_SHORT_44K), "samples": x44.shape[1],
        "sample_rate": 44100, "channels": 2, "channels_identical": True,
        "made_from": "omni/short.wav",
        "sox_back_to_16k_samples": xb.shape[1],
        "sox_back_to_16k_mel_max_abs_diff_vs_mel_short": float((fb[:, :n_cmp] - mels["short"][:, :n_cmp]).abs().max()),
        "sox_back_to_16k_mel_mean_abs_diff_vs_mel_short": float((fb[:, :n_cmp] - mels["short"][:, :n_cmp]).abs().mean()),
    }
    print(f"[omni] 44.1k stereo -> sox 16k: {xb.shape[1]} samples, mel max|diff| vs short "
          f"{audio_meta['short_44k_stereo']['sox_back_to_16k_mel_max_abs_diff_vs_mel_short']:.3g}")

    # ---- seed search and checkpoint ----------------------------------------------------
    print("[omni] searching seed ...")
    seed, slots = omni_search(mels, n_tok)
    out_dir = os.path.join(OMNI_DIR, "tiny")
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    build_omni(seed).to(torch.bfloat16).save_pretrained(out_dir)
    gen_cfg = os.path.join(out_dir, "generation_config.json")
    if os.path.exists(gen_cfg):
        os.remove(gen_cfg)  # the Instruct checkpoint's generation_config.json is not known here
    for fn in os.listdir(out_dir):
        assert fn in ("config.json", "model.safetensors"), fn
    keys = check_bf16_file(os.path.join(out_dir, "model.safetensors"))
    assert not any("gate_up_proj" in k or "language_model" in k for k in keys)
    for l in range(2):
        assert f"thinker.model.layers.{l}.mlp.gate.weight" in keys
        for e in range(6):
            for w in ("gate_proj", "up_proj", "down_proj"):
                assert f"thinker.model.layers.{l}.mlp.experts.{e}.{w}.weight" in keys
    for k in ("thinker.lm_head.weight", "thinker.model.embed_tokens.weight", "thinker.model.norm.weight",
              "thinker.audio_tower.conv_out.weight", "thinker.audio_tower.proj2.bias",
              "thinker.audio_tower.layers.1.self_attn.k_proj.bias", "talker.codec_head.weight",
              "code2wav.code_embedding.weight", "thinker.visual.pos_embed.weight"):
        assert k in keys, k
    omni_published_config(os.path.join(out_dir, "config.json"))

    # Reload the published-style checkpoint as float32 (eager attention, eager experts).
    model = build_omni(seed)
    ref = Qwen3OmniMoeForConditionalGeneration.from_pretrained(
        out_dir, dtype=torch.float32, attn_implementation="eager", experts_implementation="eager").eval()
    assert_same_state(model, ref)
    th = ref.thinker
    tcfg = th.config.text_config
    assert tcfg.rope_parameters["mrope_section"] == [4, 2, 2] and tcfg.rope_parameters["rope_theta"] == 1e6
    assert th.model.audio_tower.config._attn_implementation == "eager"
    assert tcfg._attn_implementation == "eager" and tcfg._experts_implementation == "eager"
    assert ref.config.talker_config.text_config.num_experts == 4
    assert th.lm_head.weight.data_ptr() != th.model.language_model.embed_tokens.weight.data_ptr()
    for b_name, b in th.named_buffers():  # non-persistent buffers recomputed in f32 on load
        assert torch.equal(b, dict(model.thinker.named_buffers())[b_name]), b_name
    layout = check_mrope_layout(th)
    print(f"[omni] M-RoPE frequency owners (j = 0..{len(layout) - 1}): {layout}")
    om = Omni(ref, mels)
    tensors = {}
    meta = {"model": "omni/tiny", "seed": seed,
            "special_tokens": {**SPECIAL, **ROLE}, "thinker_eos_token_id": IM_END,
            "never_generated": sorted(FORBIDDEN),
            "mrope_frequency_owner": layout, "audio": audio_meta, "prompts": {}}

    # ---- audio tower ----------------------------------------------------------------------
    tower = th.model.audio_tower
    for name in ("short", "long"):
        mel = mels[name]
        out, embed, layers, conv_out = audio_tower_capture(tower, mel)
        assert out.shape == (n_tok[name], 64)
        via_thinker = th.get_audio_features(mel[None], torch.ones(1, mel.shape[1], dtype=torch.int32)).last_hidden_state
        assert torch.equal(via_thinker, out)
        tensors[f"mel.{name}"] = mel
        tensors[f"audio.{name}"] = out
        tensors[f"audio.{name}.embed"] = embed
        for l, h in enumerate(layers):
            tensors[f"audio.{name}.layer.{l}"] = h
        tensors[f"audio.{name}.conv_out"] = conv_out
        _, lens = omni_modeling.chunk_and_pad_features(mel, torch.tensor([mel.shape[1]]), 50)
        cu = omni_modeling.get_audio_cu_seqlens(lens, torch.tensor([mel.shape[1]]), 400, 50)
        audio_meta[name]["attention_windows_cu_seqlens"] = cu.tolist()
        # sdpa must agree; and the encoder must really be windowed: the first window of the long
        # clip equals encoding its first n_window_infer (400) frames alone
        tower.config._attn_implementation = "sdpa"
        try:
            sdpa = tower(mel, feature_lens=torch.tensor([mel.shape[1]])).last_hidden_state
        finally:
            tower.config._attn_implementation = "eager"
        audio_meta[name]["sdpa_max_abs_diff"] = float((sdpa - out).abs().max())
        if len(cu) > 2:
            w0 = int(cu[1])
            first = tower(mel[:, :400], feature_lens=torch.tensor([400])).last_hidden_state
            audio_meta[name]["first_window_alone_max_abs_diff"] = float((first - out[:w0]).abs().max())
            assert audio_meta[name]["first_window_alone_max_abs_diff"] < 1e-5
            full = tower(mel, feature_lens=torch.tensor([mel.shape[1]]),
                         cu_seqlens=torch.tensor([0, out.shape[0]], dtype=torch.int32)).last_hidden_state
            audio_meta[name]["unwindowed_max_abs_diff"] = float((full - out).abs().max())
        print(f"[omni] audio.{name}: {tuple(out.shape)} windows {cu.tolist()} "
              f"rms {float(out.pow(2).mean().sqrt()):.2f} sdpa diff {audio_meta[name]['sdpa_max_abs_diff']:.1e}")

    # ---- thinker prompts ------------------------------------------------------------------
    def record(key, ids, toks, clips=(), grid=None, logits_from=0, extra=None):
        kw = om.inputs(ids, clips, grid)
        pos, delta = om.rope_index(ids, clips, grid)
        if grid is not None:
            kw["position_ids"] = pos
        logits, hidden, fnorm, routers = thinker_capture(th, **kw)
        tensors[f"{key}.logits"] = logits[logits_from:]
        if logits_from == 0:
            for l, h in enumerate(hidden):
                tensors[f"{key}.hidden.{l}"] = h
            tensors[f"{key}.final_norm"] = fnorm
            for l, r in enumerate(routers):
                tensors[f"{key}.router.{l}"] = r
        toks2, margins = greedy_decode(om.step_fn(clips, grid), ids)
        assert toks2 == toks and acceptable(toks, margins, FORBIDDEN), (key, toks, toks2)
        gen = om.hf_generate(ids, clips, grid)
        assert gen == toks, (key, gen, toks)
        assert torch.equal(pos[0], pos[1]) == (grid is None)
        p = pos[:, 0].tolist()
        assert all(float(v).is_integer() for row in p for v in row)
        entry = {"ids": ids, "length": len(ids), "greedy": toks, "greedy_min_margin": min(margins),
                 "position_ids": [[int(v) for v in row] for row in p], "rope_delta": int(delta.flatten()[0]),
                 "router_min_topk_gap": min(router_min_gap(r, 3) for r in routers)}
        if clips:
            entry["audio_clips"] = list(clips)
            starts = [i + 1 for i, t in enumerate(ids) if t == AUDIO_START]
            entry["audio_token_spans"] = [[s, s + n_tok[c]] for s, c in zip(starts, clips)]
        if logits_from:
            entry["logits_from"] = logits_from
        entry.update(extra or {})
        meta["prompts"][key] = entry
        print(f"[omni] {key}: T={len(ids)} margin {min(margins):.4f} router gap "
              f"{entry['router_min_topk_gap']:.4f} logit std {float(logits.std(-1).mean()):.2f} "
              f"rope_delta {entry['rope_delta']} greedy {toks[:8]}...")

    t_ids, t_toks = slots["text"]
    record("text", t_ids, t_toks)
    a_ids, a_toks = slots["audio_prompt"]
    record("audio_prompt", a_ids, a_toks, ("short",),
           extra={"prompt_before_expansion": audio_user_turn(1, a_ids[4 + n_tok["short"] + 1:-5])})
    # the processor gives exactly these ids for the unexpanded prompt
    pids = proc(text=ids_to_text(meta["prompts"]["audio_prompt"]["prompt_before_expansion"], id2name),
                audio=[wavs["short"]], return_tensors="pt")["input_ids"][0].tolist()
    assert pids == a_ids
    t2_ids, t2_toks = slots["turn2"]
    hist = len(a_ids) + 8 + 2
    assert t2_ids[:hist] == a_ids + a_toks[:8] + [IM_END, NL]
    record("turn2", t2_ids, t2_toks, ("short", "long"), logits_from=hist,
           extra={"history_length": hist, "history_answer_tokens": 8})
    m_ids, m_toks = slots["mrope"]
    record("mrope", m_ids, m_toks, (), [[1, 4, 6]], extra={"image_grid_thw": [[1, 4, 6]]})

    save_reference(out_dir, tensors, meta)
    return seed, meta


def main():
    args = sys.argv[1:]
    force = "--regen-wavs" in args
    only = {a for a in args if not a.startswith("--")}
    assert only <= {"qwen3_moe", "omni"}, only
    if not only or "qwen3_moe" in only:
        build_qwen3_moe()
    if not only or "omni" in only:
        build_omni_fixture(force)


if __name__ == "__main__":
    main()
