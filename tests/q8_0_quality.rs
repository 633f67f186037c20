//! Q8_0 against the BF16 reference on the tiny fixtures, with bounds reasoned from the format
//! (see tests/common tol::Q8_*): the quantised model's logits stay close to transformers'
//! float32 logits of the BF16 weights, and its greedy choice mostly agrees.

mod common;

use common::{FIXTURE_MODELS, fixture, reference, tensor, tol};
use qwen_omni::app::quant_report::cosine;
use qwen_omni::models::qwen3::{Logits, Qwen3Model};

#[test]
fn q8_0_logits_stay_within_the_format_bounds_of_the_bf16_reference() {
    for name in FIXTURE_MODELS {
        let mut m = Qwen3Model::load(&fixture(name)).unwrap();
        // rows that are not whole 32-blocks stay BF16 (odd fixture widths 40, 48, 16)
        let c = &m.config;
        let whole = |k: usize| k.is_multiple_of(32) as usize;
        let per_layer =
            4 * whole(c.hidden_size) + 2 * whole(c.hidden_size) + whole(c.intermediate_size);
        let per_layer =
            per_layer - whole(c.hidden_size) + whole(c.num_attention_heads * c.head_dim());
        let expected = per_layer * c.num_hidden_layers + whole(c.hidden_size);
        let n = m.quantize_q8_0();
        assert_eq!(n, expected, "{name}: quantised matrices");
        let (r, store) = reference(&fixture(name));
        let (mut agree, mut total) = (0usize, 0usize);
        for (i, p) in r.prompts.iter().enumerate() {
            let mut cache = m.new_cache(64);
            let logits = m.forward(&p.ids, &mut cache, Logits::All).unwrap();
            let want = tensor(&store, &format!("p{i}.logits"));
            let ours = &logits[logits.len() - want.len()..];
            let cos = cosine(ours, &want);
            let rel = common::rel_err(ours, &want);
            eprintln!("{name} p{i}: cosine {cos:.6}, max rel {rel:.4}");
            assert!(cos >= tol::Q8_LOGITS_COSINE, "{name} p{i}: cosine {cos}");
            assert!(
                rel <= tol::Q8_LOGITS_REL,
                "{name} p{i}: relative error {rel}"
            );
            let vocab = m.config.vocab_size;
            for (a, b) in ours.chunks(vocab).zip(want.chunks(vocab)) {
                total += 1;
                agree += (qwen_omni::cpu::argmax(a) == qwen_omni::cpu::argmax(b)) as usize;
            }
        }
        assert!(
            agree * 100 >= total * tol::Q8_TOP1_AGREE_PERCENT,
            "{name}: top-1 agreement {agree}/{total}"
        );
    }
}
