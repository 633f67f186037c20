#!/usr/bin/env python3
"""Generate the reference fixtures under tests/fixtures/.

Run (from anywhere):
    /opt/ref-venv/bin/python scripts/make_fixtures.py

Needs the packages pinned in scripts/requirements-fixtures.txt and the real Qwen3
tokenizer fetched by scripts/setup-test-data.sh (target/test-data/qwen3-tokenizer/).
Everything is deterministic (fixed seeds, CPU, float32 references, eager attention).

Writes:
    tests/fixtures/qwen3/<model>/{config.json, generation_config.json,
        model.safetensors | model-0000k-of-0000n.safetensors + model.safetensors.index.json,
        reference.safetensors, reference.json}
    tests/fixtures/tokenizer/{cases.json, chat.json, chat_extra.json}
"""

import json
import math
import os
import random
import shutil
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import Qwen3Config, Qwen3ForCausalLM

torch.set_num_threads(2)
torch.use_deterministic_algorithms(True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")
TOK_DIR = os.path.join(ROOT, "target", "test-data", "qwen3-tokenizer")

N_GREEDY = 32
# Seed/prompt search (pick_seed_and_prompts): every prompt's greedy decode must have each
# step's top1-top2 logit gap >= spec["margin_goal"] and never emit an EOS id. The hard
# requirement (asserted) is > MARGIN_HARD; the goal is stricter for less exact engines.
MARGIN_HARD = 1e-3
MAX_SEED_TRIES = 50
# ... and every prompt's 32 greedy tokens must contain at least this many distinct ids,
# so the test is not a degenerate "repeat one token" loop.
MIN_DISTINCT = 8
PROMPT_TRIES = 30

# Real Qwen3 checkpoints (e.g. Qwen3-0.6B, written by transformers 4.51) carry these
# legacy keys instead of transformers-5's "dtype" / "rope_parameters" / "layer_types".
LEGACY_STYLE = "legacy"  # config.json exactly like a published Qwen3 checkpoint
V5_STYLE = "v5"  # config.json as transformers 5 writes it (rope_parameters, dtype)
BOTH_STYLE = "both"  # transformers 5 output plus the legacy keys

MODELS = [
    dict(
        name="tied-gqa2",
        seed=1000,
        margin_goal=0.05,
        config=dict(
            vocab_size=384, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, intermediate_size=96,
            tie_word_embeddings=True, rope_theta=1e6, rms_norm_eps=1e-6,
            max_position_embeddings=40960, bos_token_id=382, eos_token_id=383,
        ),
        # As Qwen3's published generation_config.json: eos list, sampling defaults.
        generation=dict(
            bos_token_id=382, do_sample=True, eos_token_id=[383, 382], pad_token_id=382,
            temperature=0.6, top_k=20, top_p=0.95,
        ),
        prompt_lens=[1, 7, 19],
        residual_gain=3.0,
        config_style=LEGACY_STYLE,
        shard=None,
    ),
    dict(
        name="untied-mha",
        seed=2000,
        margin_goal=0.05,
        config=dict(
            vocab_size=301, hidden_size=48, num_hidden_layers=3, num_attention_heads=3,
            num_key_value_heads=3, head_dim=24, intermediate_size=80,
            tie_word_embeddings=False, rope_theta=1e6, rms_norm_eps=1e-6,
            max_position_embeddings=40960, bos_token_id=299, eos_token_id=300,
        ),
        generation=dict(bos_token_id=299, eos_token_id=300),
        prompt_lens=[1, 7, 19],
        config_style=BOTH_STYLE,
        shard="100KB",
    ),
    dict(
        name="odd-gqa3",
        seed=3000,
        margin_goal=0.05,
        config=dict(
            vocab_size=257, hidden_size=40, num_hidden_layers=2, num_attention_heads=6,
            num_key_value_heads=2, head_dim=12, intermediate_size=72,
            tie_word_embeddings=False, rope_theta=10000.0, rms_norm_eps=1e-5,
            max_position_embeddings=4096, bos_token_id=255, eos_token_id=256,
        ),
        generation=dict(
            bos_token_id=255, do_sample=True, eos_token_id=256, temperature=0.6, top_k=20,
            top_p=0.95,
        ),
        prompt_lens=[1, 7, 19],
        config_style=V5_STYLE,
        shard=None,
    ),
    dict(
        name="real-vocab",
        seed=4000,
        margin_goal=0.02,
        config=dict(
            vocab_size=151936, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, head_dim=8, intermediate_size=32,
            tie_word_embeddings=True, rope_theta=1e6, rms_norm_eps=1e-6,
            max_position_embeddings=40960, bos_token_id=151643, eos_token_id=151645,
        ),
        generation=dict(
            bos_token_id=151643, do_sample=True, eos_token_id=151645, pad_token_id=151643,
            temperature=0.6, top_k=20, top_p=0.95,
        ),
        # "Hello world" -> [9707, 1879] with the real tokenizer; plus 6 random ids.
        fixed_prompts=[[9707, 1879]],
        prompt_lens=[6],
        prompt_id_max=151643,  # keep random prompt ids out of the special-token range
        last_logits_only=True,
        residual_gain=3.0,
        config_style=LEGACY_STYLE,
        shard=None,
    ),
]

COMMON_CONFIG = dict(
    attention_bias=False, hidden_act="silu", use_sliding_window=False, sliding_window=None,
    max_window_layers=28, attention_dropout=0.0, initializer_range=0.02, use_cache=True,
)

# Expected E[w^2] of a Uniform(0.5, 1.5) RMSNorm weight: 1 + 1/12.
NORM_W2 = 1.0 + 1.0 / 12.0
TARGET_LOGIT_STD = 4.0


# --------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------


def build_model(spec, seed):
    cfg = Qwen3Config(**spec["config"], **COMMON_CONFIG)
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(cfg).to(torch.float32).eval()
    g = torch.Generator().manual_seed(seed)
    H = cfg.hidden_size
    gain = spec.get("residual_gain", 1.0)
    # logit = <final_norm(h), W_row>; final_norm(h) has RMS ~ sqrt(E[w^2]) with
    # w ~ U(0.5,1.5), so logit std ~ sqrt(H * NORM_W2) * std(W).
    head_std = TARGET_LOGIT_STD / math.sqrt(H * NORM_W2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5, generator=g)
            elif name == "model.embed_tokens.weight":
                # Tied: the embedding is the LM head, so it sets the logit scale.
                # Untied: std 1 keeps the residual stream at RMS ~1 like the layer outputs.
                p.normal_(0.0, head_std if cfg.tie_word_embeddings else 1.0, generator=g)
            elif name == "lm_head.weight":
                assert not cfg.tie_word_embeddings
                p.normal_(0.0, head_std, generator=g)
            elif p.dim() == 2:  # q/k/v/o/gate/up/down projections, [out, in]
                std = 1.0 / math.sqrt(p.shape[1])
                if name.endswith(("o_proj.weight", "down_proj.weight")):
                    # Tied models: the token's own embedding, still in the residual stream,
                    # scores high against itself through the tied head and greedy decoding
                    # collapses into repeating one token. Larger layer outputs dilute it.
                    std *= gain
                p.normal_(0.0, std, generator=g)
            else:
                raise RuntimeError(f"unexpected parameter {name}")
    if cfg.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    # Round every weight to bf16, then compute in f32 on exactly those values.
    model = model.to(torch.bfloat16).to(torch.float32)
    return model


@torch.no_grad()
def greedy(model, ids, n):
    """Plain greedy decode with full forward passes (no KV cache, no EOS handling)."""
    seq = list(ids)
    out, margins = [], []
    for _ in range(n):
        logits = model(torch.tensor([seq])).logits[0, -1]
        top = torch.topk(logits, 2)
        out.append(int(top.indices[0]))
        margins.append(float(top.values[0] - top.values[1]))
        seq.append(out[-1])
    return out, margins


def eos_ids(spec):
    e = {spec["config"]["eos_token_id"]}
    g = spec["generation"]["eos_token_id"]
    e |= set(g if isinstance(g, list) else [g])
    return e


def acceptable(spec, toks, margins):
    return (min(margins) >= spec["margin_goal"] and not (eos_ids(spec) & set(toks))
            and len(set(toks)) >= MIN_DISTINCT)


def pick_seed_and_prompts(spec):
    """First model seed (base, base+1, ...) for which every prompt slot has an acceptable
    greedy decode; random prompts are redrawn (up to PROMPT_TRIES times per slot, from a
    generator seeded by the model seed) until one is acceptable. Fixed prompts are kept."""
    vmax = spec.get("prompt_id_max", spec["config"]["vocab_size"])
    for k in range(MAX_SEED_TRIES):
        seed = spec["seed"] + k
        model = build_model(spec, seed)
        rng = random.Random(seed)
        prompts, ok = [], True
        for p in spec.get("fixed_prompts", []):
            if not acceptable(spec, *greedy(model, p, N_GREEDY)):
                ok = False
                break
            prompts.append(list(p))
        for n in spec["prompt_lens"] if ok else []:
            for _ in range(PROMPT_TRIES):
                p = [rng.randrange(vmax) for _ in range(n)]
                if acceptable(spec, *greedy(model, p, N_GREEDY)):
                    prompts.append(p)
                    break
            else:
                ok = False
                break
        print(f"  {spec['name']}: seed {seed}: {'ok' if ok else 'rejected'}")
        if ok:
            return seed, prompts
    raise RuntimeError(f"no seed found for {spec['name']}")


def rewrite_config(path, spec):
    with open(path) as f:
        cfg = json.load(f)
    style = spec["config_style"]
    theta = cfg["rope_parameters"]["rope_theta"]
    if style in (LEGACY_STYLE, BOTH_STYLE):
        cfg["rope_theta"] = int(theta) if float(theta).is_integer() else theta
        cfg["rope_scaling"] = None
        cfg["torch_dtype"] = "bfloat16"
    if style == LEGACY_STYLE:
        for k in ("rope_parameters", "dtype", "layer_types", "pad_token_id"):
            cfg.pop(k, None)
    assert style == V5_STYLE or "rope_theta" in cfg
    with open(path, "w") as f:
        json.dump(dict(sorted(cfg.items())), f, indent=2)
        f.write("\n")


def write_generation_config(path, spec):
    gen = dict(spec["generation"])
    gen["transformers_version"] = "5.24.0"
    with open(path, "w") as f:
        json.dump(dict(sorted(gen.items())), f, indent=2)
        f.write("\n")


@torch.no_grad()
def forward_with_hidden(model, ids):
    """Logits [T, V], hidden list (embedding + raw layer outputs), final-norm output."""
    caps = {}

    def hook(key):
        def fn(_mod, _inp, out):
            caps[key] = (out[0] if isinstance(out, tuple) else out).detach().clone()
        return fn

    handles = [model.model.embed_tokens.register_forward_hook(hook("emb")),
               model.model.norm.register_forward_hook(hook("norm"))]
    for i, layer in enumerate(model.model.layers):
        handles.append(layer.register_forward_hook(hook(f"layer{i}")))
    try:
        out = model(torch.tensor([ids]), output_hidden_states=True)
    finally:
        for h in handles:
            h.remove()
    L = len(model.model.layers)
    hidden = [caps["emb"][0]] + [caps[f"layer{i}"][0] for i in range(L)]
    # Cross-check against transformers' own hidden_states: equal except the last entry,
    # which transformers 5 replaces with the final-norm output.
    hs = out.hidden_states
    assert len(hs) == L + 1
    for l in range(L):
        assert torch.equal(hs[l][0], hidden[l]), l
    assert torch.equal(hs[L][0], caps["norm"][0])
    return out.logits[0], hidden, caps["norm"][0]


def build_fixture(spec):
    name = spec["name"]
    print(f"[{name}] searching seed ...")
    seed, prompts = pick_seed_and_prompts(spec)
    model = build_model(spec, seed)

    out_dir = os.path.join(FIX, "qwen3", name)
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)

    bf16 = build_model(spec, seed).to(torch.bfloat16)
    kw = {"max_shard_size": spec["shard"]} if spec["shard"] else {}
    bf16.save_pretrained(out_dir, **kw)
    rewrite_config(os.path.join(out_dir, "config.json"), spec)
    write_generation_config(os.path.join(out_dir, "generation_config.json"), spec)

    # Check the checkpoint: all bf16, no lm_head when tied, shards when requested.
    st_files = sorted(f for f in os.listdir(out_dir) if f.endswith(".safetensors"))
    if spec["shard"]:
        assert len(st_files) >= 2 and os.path.exists(
            os.path.join(out_dir, "model.safetensors.index.json")), st_files
    else:
        assert st_files == ["model.safetensors"], st_files
    keys = set()
    for fn in st_files:
        with safe_open(os.path.join(out_dir, fn), "pt") as f:
            for k in f.keys():
                assert f.get_slice(k).get_dtype() == "BF16", (fn, k)
                keys.add(k)
    assert ("lm_head.weight" in keys) == (not spec["config"]["tie_word_embeddings"]), keys

    # Reload the saved bf16 checkpoint as float32; it must be bit-identical to `model`.
    ref = Qwen3ForCausalLM.from_pretrained(out_dir, dtype=torch.float32, attn_implementation="eager").eval()
    assert ref.config._attn_implementation == "eager"
    assert ref.config.rope_parameters["rope_theta"] == spec["config"]["rope_theta"]
    sd_a, sd_b = model.state_dict(), ref.state_dict()
    assert sd_a.keys() == sd_b.keys()
    for k in sd_a:
        assert sd_b[k].dtype == torch.float32 and torch.equal(sd_a[k], sd_b[k]), k

    tensors, prompt_json = {}, []
    logit_stds = []
    for i, ids in enumerate(prompts):
        logits, hidden, fnorm = forward_with_hidden(ref, ids)
        logit_stds.append(float(logits.std(dim=-1).mean()))
        if spec.get("last_logits_only"):
            logits = logits[-1:]
        tensors[f"p{i}.logits"] = logits
        for l, h in enumerate(hidden):
            tensors[f"p{i}.hidden.{l}"] = h
        tensors[f"p{i}.final_norm"] = fnorm
        toks, margins = greedy(ref, ids, N_GREEDY)
        assert min(margins) > MARGIN_HARD, (name, i, min(margins))
        assert len(set(toks)) >= MIN_DISTINCT and not (eos_ids(spec) & set(toks)), toks
        # Cross-check with HF generate (KV cache path).
        gen = ref.generate(
            torch.tensor([ids]), do_sample=False, max_new_tokens=N_GREEDY,
            min_new_tokens=N_GREEDY, eos_token_id=None, pad_token_id=0,
            temperature=None, top_p=None, top_k=None,
        )[0, len(ids):].tolist()
        assert gen == toks, (name, i, gen, toks)
        prompt_json.append({"ids": ids, "greedy": toks, "greedy_min_margin": min(margins)})
        print(f"  p{i}: T={len(ids)} logit std {logit_stds[-1]:.2f} "
              f"hidden rms {[round(float(h.pow(2).mean().sqrt()), 2) for h in hidden]} "
              f"min margin {min(margins):.4f}")

    tensors = {k: v.to(torch.float32).contiguous() for k, v in tensors.items()}
    save_file(tensors, os.path.join(out_dir, "reference.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out_dir, "reference.json"), "w") as f:
        json.dump({"model": name, "seed": seed, "prompts": prompt_json}, f, indent=1)
        f.write("\n")
    return {"name": name, "seed": seed,
            "min_margins": [p["greedy_min_margin"] for p in prompt_json],
            "logit_std": logit_stds}


# --------------------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------------------

HANDWRITTEN = [
    "",
    " ",
    "Hello world",
    "Hello, world!",
    "hello world",
    " Hello world",
    "Hello world ",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure you'll agree it's what we'd've done.",
    "Don't STOP believing; it's ALL CAPS and MiXeD cAsE.",
    "What is the capital of France?",
    "Wait... what?!? Really??? No way!!!",
    "e-mail: someone@example.com, web: https://example.org/path?q=1&r=two#frag",
    "(parentheses) [brackets] {braces} <angles> \"quotes\" 'single' `backticks`",
    "~!@#$%^&*()_+-=[]{}|;':\",./<>?",
    "---- ==== **** //// \\\\\\\\ ____",
    "1",
    "12",
    "123",
    "1234",
    "12345",
    "3.14159265358979323846264338327950288419716939937510",
    "1234567890123456789012345678901234567890",
    "0000000000",
    "The year 2024 had 366 days; 1,000,000 people and $12.50 each (3/4 of them at 99.9%).",
    "-42 +17 1e10 0x1F 0b1010 1_000_000",
    "v1.2.3-rc.4+build.5",
    "你好，世界！",
    "我爱自然语言处理。今天天气很好，我们去公园散步吧。",
    "日本語のテキストです。ひらがな、カタカナ、漢字。",
    "東京は日本の首都です。",
    "안녕하세요, 세계! 한국어 문장입니다.",
    "مرحبا بالعالم! هذه جملة باللغة العربية.",
    "नमस्ते दुनिया! यह हिंदी में एक वाक्य है।",
    "Привет, мир! Это предложение на русском языке.",
    "Grüße aus München! Die Bäume blühen, Öl und Übermut, süß und schön, Straße.",
    "Ça va? L'été à Noël, où est la forêt? Élève, garçon, crème brûlée, naïve.",
    "สวัสดีชาวโลก ภาษาไทยไม่มีช่องว่างระหว่างคำ",
    "Γειά σου κόσμε! Ελληνικά.",
    "שלום עולם",
    "Tiếng Việt có dấu: Xin chào thế giới.",
    "¡Hola, mundo! ¿Cómo estás? Mañana.",
    "Mixed: Hello 你好 こんにちは 안녕 مرحبا Привет",
    "😀",
    "😀😃😄😁",
    "I love 🍕 and 🍣!",
    "👍🏽 👋🏿 🧑🏻‍💻",
    "👨‍👩‍👧‍👦 family",
    "🏳️‍🌈 🏴‍☠️",
    "🇺🇸🇨🇳🇯🇵🇩🇪🇫🇷",
    "❤️ ♥ ☺️ ✔️ ©️ ®",
    "def hello(name):\n    print(f\"Hello, {name}!\")\n    return None\n",
    "class Foo:\n    def __init__(self, x: int) -> None:\n        self.x = x\n\n    def bar(self):\n        if self.x > 0:\n            return [i ** 2 for i in range(self.x)]\n        return []\n",
    "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * 2).collect();\n    println!(\"{:?}\", v);\n}\n",
    "impl<'a, T: Clone + Send> Iterator for Foo<'a, T> {\n    type Item = &'a T;\n    fn next(&mut self) -> Option<Self::Item> { None }\n}",
    "{\"name\": \"qwen\", \"layers\": 28, \"tied\": true, \"eps\": 1e-06, \"list\": [1, 2, 3], \"nested\": {\"a\": null}}",
    "{\n  \"key\": \"value\",\n  \"array\": [\n    1,\n    2\n  ]\n}",
    "#include <stdio.h>\nint main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC LIMIT 10;",
    "<html><body><div class=\"x\">Hi &amp; bye</div></body></html>",
    "$ cargo build --release && ./target/release/app --flag=1 2>&1 | tee log.txt",
    "a  b",
    "a   b",
    "a    b",
    "a                b",
    "  leading two",
    "trailing two  ",
    "   ",
    "\t",
    "\t\tindented with tabs",
    "a\tb\tc",
    "\n",
    "\n\n",
    "\n\n\n",
    "line1\nline2",
    "line1\n\nline2",
    "line1\r\nline2\r\n",
    "\r\n\r\n",
    "\r",
    " \n \n ",
    "  \t \n\t  x",
    "word \n",
    "end with newline\n",
    "   \n\n   spaced   \n\n",
    "<|im_start|>user\nhi<|im_end|>",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>",
    "text before<|endoftext|>text after",
    "<think>",
    "<think>\nLet me think.\n</think>\n\nThe answer is 4.",
    "<|im_end|><|im_end|>",
    "< |im_start| > not special",
    "<|im_start",
    "<tool_call>\n{\"name\": \"f\"}\n</tool_call>",
    "<|vision_start|><|image_pad|><|vision_end|>",
    "e\u0301 vs \u00e9",
    "n\u0303 a\u0308 o\u0302\u0323",
    "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357\u0334\u0362\u0335\u031c\u0330\u0354L",
    "non\u00a0breaking\u00a0space",
    "zero\u200bwidth\u200bspace",
    "joiner\u200d\u200cnon-joiner",
    "\ufeffBOM at start",
    "soft\u00adhyphen",
    "em\u2014dash en\u2013dash \u2026 \u201cquotes\u201d \u2018single\u2019",
    "\u2028line sep\u2029para sep",
    "\u3000ideographic space\u3000",
    "fullwidth ＡＢＣ１２３！",
    "ﬁ ligature ﬀ Ⅻ ① ²",
    "math: ∀x∈ℝ, ∑ᵢ xᵢ² ≥ 0; α β γ δ ∞ ≠ ≤",
    "\U0001d54f\U0001d552\U0001d55f \U00010348 \U0001f600",
    "\x00\x01\x7f control",
    "tab\u000bvtab\u000cformfeed",
]


LONG_PARAGRAPH = (
    "Large language models are trained on vast corpora of text gathered from books, "
    "articles, source code and conversations. During pre-training the model learns to "
    "predict the next token, and in doing so it acquires a surprising amount of knowledge "
    "about grammar, facts, reasoning patterns and even a little arithmetic. After "
    "pre-training, models are usually fine-tuned with supervised examples and then "
    "aligned with human preferences, which makes them more helpful, honest and harmless. "
    "Inference engines, in turn, must reproduce the exact arithmetic of the reference "
    "implementation: the same tokenization, the same rotary position embeddings, the same "
    "normalization epsilon, and the same ordering of attention heads. Even a small mistake, "
    "such as forgetting the per-head query and key normalization introduced in Qwen3, "
    "quietly degrades the output without crashing anything. That is why careful tests "
    "compare intermediate activations layer by layer against a trusted reference, and why "
    "greedy decoding is checked token by token over dozens of steps. In 2025, models with "
    "30,000,000,000 parameters run on a single workstation; tomorrow, who knows?"
)


def generated_cases():
    rng = random.Random(12345)
    words = {
        "en": "the of and to in is that for it as with was on be at by this have from or "
              "model token layer weight attention cache matrix vector kernel shader".split(),
        "zh": list("的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出而要于就下得可"),
        "ja": ["これ", "は", "テスト", "です", "日本", "言語", "モデル", "の", "を", "に", "ます"],
        "ko": ["한국어", "모델", "테스트", "입니다", "안녕", "세계", "문장", "그리고"],
        "ar": ["مرحبا", "العالم", "نموذج", "لغة", "كبير", "هذا", "في", "من"],
        "hi": ["नमस्ते", "दुनिया", "भाषा", "मॉडल", "यह", "है", "और", "में"],
        "ru": ["привет", "мир", "модель", "язык", "большой", "это", "и", "в"],
        "de": ["Grüße", "Mädchen", "Bäcker", "über", "schön", "Straße", "und", "Öl"],
        "fr": ["été", "forêt", "garçon", "où", "très", "déjà", "Noël", "à"],
        "th": ["สวัสดี", "ภาษา", "ไทย", "โมเดล", "ขนาด", "ใหญ่"],
    }
    emoji = ["😀", "🚀", "🔥", "👍🏽", "👨‍👩‍👧", "🇯🇵", "🏳️‍🌈", "✨", "🤖", "❤️"]
    seps = [" ", "  ", "\t", "\n", "\r\n", " \n ", "", ", ", ". "]
    cases = []

    # numbers of every length 1..40, and mixed digit/letter runs
    for n in range(1, 41):
        cases.append("".join(rng.choice("0123456789") for _ in range(n)))
    for _ in range(10):
        cases.append(f"x{rng.randrange(10**rng.randrange(1, 12))}y{rng.random():.6f}z")

    # whitespace runs: k spaces / tabs / newlines between and around words
    for k in range(1, 9):
        cases.append("a" + " " * k + "b")
        cases.append(" " * k + "lead")
        cases.append("trail" + " " * k)
        cases.append("x" + "\n" * k + "y")
    for k in range(1, 5):
        cases.append("\t" * k + "code" + "\t" * k)
        cases.append(("    " * k) + "return x")

    # random multilingual sentences
    langs = sorted(words)
    for i in range(60):
        lang = langs[i % len(langs)]
        n = rng.randrange(2, 12)
        parts = []
        for _ in range(n):
            parts.append(rng.choice(words[lang]))
            parts.append(rng.choice(seps[:3] if lang not in ("zh", "ja", "th") else ["", "", " "]))
        if rng.random() < 0.3:
            parts.append(rng.choice(emoji))
        cases.append("".join(parts).strip(" ") if i % 4 else "".join(parts))

    # random mixes across scripts, punctuation, emoji and digits
    pool = [w for l in langs for w in words[l]] + emoji + list(".,;:!?()[]{}'\"-_/\\@#$%&*")
    for _ in range(40):
        n = rng.randrange(1, 15)
        cases.append("".join(rng.choice(pool) + rng.choice(seps) for _ in range(n)))

    # special tokens in various positions
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>",
                "<tool_call>", "</tool_call>"]
    for _ in range(12):
        a, b = rng.choice(pool), rng.choice(pool)
        s = rng.choice(specials)
        cases.append(rng.choice([f"{a}{s}{b}", f"{a} {s} {b}", f"{s}{a}\n{b}", f"{a}\n{s}\n"]))

    cases.append(LONG_PARAGRAPH)
    cases.append(LONG_PARAGRAPH.replace(" ", "\n"))
    cases.append((LONG_PARAGRAPH + "\n\n") * 3)
    return cases


def make_tokenizer_fixtures():
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    tj = os.path.join(TOK_DIR, "tokenizer.json")
    if not os.path.exists(tj):
        sys.exit(f"missing {tj}: run scripts/setup-test-data.sh first")
    tok = Tokenizer.from_file(tj)

    texts, seen = [], set()
    for t in HANDWRITTEN + generated_cases():
        if t not in seen:
            seen.add(t)
            texts.append(t)
    cases, special_differs = [], 0
    for t in texts:
        ids = tok.encode(t, add_special_tokens=False).ids
        if tok.encode(t, add_special_tokens=True).ids != ids:
            special_differs += 1
        cases.append({"text": t, "ids": ids})
    assert tok.encode("Hello world", add_special_tokens=False).ids == [9707, 1879]
    assert len(cases) >= 220, len(cases)
    out = os.path.join(FIX, "tokenizer")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"[tokenizer] {len(cases)} cases; add_special_tokens=True differs in {special_differs}")

    # chat template
    hf = AutoTokenizer.from_pretrained(TOK_DIR)
    assert hf.chat_template, "tokenizer_config.json has no chat_template"

    def plain(messages, add_gen):
        s = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return s + ("<|im_start|>assistant\n" if add_gen else "")

    def render(messages, add_gen, **kw):
        text = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_gen, **kw)
        ids = tok.encode(text, add_special_tokens=False).ids
        ids_hf = hf.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_gen,
                                        return_dict=True, **kw)["input_ids"]
        assert list(ids_hf) == ids, (ids_hf, ids)
        return text, ids

    sys_msg = {"role": "system", "content": "You are a helpful assistant."}
    plain_convs = [
        ([{"role": "user", "content": "Hello!"}], True),
        ([sys_msg, {"role": "user", "content": "What is the capital of France?"}], True),
        ([sys_msg,
          {"role": "user", "content": "Give me a prime number."},
          {"role": "assistant", "content": "7 is a prime number."},
          {"role": "user", "content": "And one larger than 100, please? 你好 😀"}], True),
        ([{"role": "user", "content": "Hi"},
          {"role": "assistant", "content": "Hello! How can I help?"},
          {"role": "user", "content": "Write `fn main() {}`\n  with   spaces."}], True),
        ([sys_msg, {"role": "user", "content": "No generation prompt here."}], False),
    ]
    chat = []
    for messages, add_gen in plain_convs:
        text, ids = render(messages, add_gen)
        assert text == plain(messages, add_gen), repr(text)
        chat.append({"messages": messages, "add_generation_prompt": add_gen,
                     "text": text, "ids": ids})
    with open(os.path.join(out, "chat.json"), "w", encoding="utf-8") as f:
        json.dump(chat, f, ensure_ascii=False, indent=1)
        f.write("\n")

    # Where the official template does NOT give the plain format (documented in README).
    extra_convs = [
        ("enable_thinking=False appends an empty think block after the assistant header",
         [{"role": "user", "content": "Hello!"}], True, {"enable_thinking": False}),
        ("enable_thinking=True is the same as not passing it",
         [{"role": "user", "content": "Hello!"}], True, {"enable_thinking": True}),
        ("<think> blocks in assistant turns before the last user turn are stripped",
         [{"role": "user", "content": "2+2?"},
          {"role": "assistant", "content": "<think>\nsimple sum\n</think>\n\n4"},
          {"role": "user", "content": "3+3?"}], True, {}),
        ("a final assistant turn (after the last user turn) gets a think block, empty if it had none",
         [{"role": "user", "content": "2+2?"},
          {"role": "assistant", "content": "4"}], False, {}),
        ("a final assistant turn keeps its reasoning",
         [{"role": "user", "content": "2+2?"},
          {"role": "assistant", "content": "<think>\nsimple sum\n</think>\n\n4"}], False, {}),
    ]
    extra = []
    for note, messages, add_gen, kw in extra_convs:
        text, ids = render(messages, add_gen, **kw)
        extra.append({"note": note, "messages": messages, "add_generation_prompt": add_gen,
                      "template_kwargs": kw, "text": text, "ids": ids,
                      "plain_format_text": plain(messages, add_gen),
                      "matches_plain_format": text == plain(messages, add_gen)})
        print(f"[chat extra] matches plain={text == plain(messages, add_gen)}: {note}")
    with open(os.path.join(out, "chat_extra.json"), "w", encoding="utf-8") as f:
        json.dump(extra, f, ensure_ascii=False, indent=1)
        f.write("\n")
    return len(cases), special_differs


def main():
    only = set(sys.argv[1:])
    summary = []
    if not only or "tokenizer" in only:
        make_tokenizer_fixtures()
    for spec in MODELS:
        if not only or spec["name"] in only:
            summary.append(build_fixture(spec))
    for s in summary:
        print(f"{s['name']}: seed {s['seed']}, min margins "
              f"{[round(m, 4) for m in s['min_margins']]}, logit std {[round(x, 2) for x in s['logit_std']]}")


if __name__ == "__main__":
    main()
