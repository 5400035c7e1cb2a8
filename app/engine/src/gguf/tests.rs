#![allow(clippy::unwrap_used)]
use super::*;

/// llama.cpp's permutation (HF → GGUF): `reshape(heads, 2, hd/2, in)`, swap axes 1 and 2.
fn permute(w: &Tensor, heads: usize) -> Tensor {
    let (rows, cols) = w.dims2().unwrap();
    w.reshape((heads, 2, rows / heads / 2, cols))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap()
        .reshape((rows, cols))
        .unwrap()
}

#[test]
fn unpermute_inverts_the_llama_cpp_permutation() {
    let w = Tensor::arange(0f32, 3.0 * 8.0 * 5.0, &Device::Cpu)
        .unwrap()
        .reshape((24, 5))
        .unwrap();
    let back = unpermute(&permute(&w, 3), 3).unwrap();
    assert_eq!(back.to_vec2::<f32>().unwrap(), w.to_vec2::<f32>().unwrap());
    // Head 0 of width 8 in GGUF order holds HF rows 0,4,1,5,2,6,3,7.
    let p = permute(&w, 3).to_vec2::<f32>().unwrap();
    let firsts: Vec<f32> = p.iter().take(8).map(|r| r[0] / 5.0).collect();
    assert_eq!(firsts, [0.0, 4.0, 1.0, 5.0, 2.0, 6.0, 3.0, 7.0]);
    let bias = Tensor::arange(0f32, 8.0, &Device::Cpu).unwrap();
    let b = unpermute(&bias, 1).unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(b, [0.0, 2.0, 4.0, 6.0, 1.0, 3.0, 5.0, 7.0]);
    assert!(unpermute(&bias, 3).is_err());
}

#[test]
fn tensor_names_map_both_ways() {
    for (g, h) in [
        ("token_embd.weight", "model.embed_tokens.weight"),
        ("output_norm.weight", "model.norm.weight"),
        ("output.weight", "lm_head.weight"),
        ("blk.7.attn_q.bias", "model.layers.7.self_attn.q_proj.bias"),
        (
            "blk.0.ffn_norm.weight",
            "model.layers.0.post_attention_layernorm.weight",
        ),
        (
            "blk.29.ffn_down.weight",
            "model.layers.29.mlp.down_proj.weight",
        ),
    ] {
        assert_eq!(hf_name(g).as_deref(), Some(h));
        assert_eq!(gguf_name(h), g);
    }
    for g in [
        "rope_freqs.weight",
        "blk.x.attn_q.weight",
        "blk.0.attn_q.scale",
        "blk.0.ssm_a",
    ] {
        assert_eq!(hf_name(g), None, "{g}");
    }
}
