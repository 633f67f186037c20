// GELU in the exact (erf) form of the AuT encoder, prepended to the shaders that apply it
// (pipelines.rs joins the files). The twin is models/audio_encoder/aut/gelu.rs: the same
// erfc fit (Numerical Recipes `erfcc`, relative error <= 1.2e-7), here in f32 as WGSL has no
// f64. gelu(x) = x/2 · erfc(−x/√2) keeps erfc's relative accuracy for large negative x,
// where 1 + erf would cancel.

fn erfc_fit(x: f32) -> f32 {
    let z = abs(x);
    let t = 1.0 / (1.0 + 0.5 * z);
    var poly = 0.17087277;
    poly = poly * t - 0.82215223;
    poly = poly * t + 1.48851587;
    poly = poly * t - 1.13520398;
    poly = poly * t + 0.27886807;
    poly = poly * t - 0.18628806;
    poly = poly * t + 0.09678418;
    poly = poly * t + 0.37409196;
    poly = poly * t + 1.00002368;
    poly = poly * t - 1.26551223;
    let tail = t * exp(poly - z * z);
    return select(2.0 - tail, tail, x >= 0.0);
}

fn gelu(x: f32) -> f32 {
    return 0.5 * x * erfc_fit(-x * 0.70710678118654752);
}
