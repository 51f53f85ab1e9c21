"""Tiny random-weight models of real architectures, with a real embedded tokenizer, for tests.

They use SmolLM2's tokenizer (49k vocab, fast to load, ~100 MB package), never the default model's, so
the test suite needs no Qwen conversion.
"""

from __future__ import annotations

from latentbench.models.loading import LoadedModel, _ensure_padding, embedded_model_dir

ARCHITECTURES = ("llama", "qwen2", "qwen3")
TOKENIZER_MODEL = "smollm2-135m"  # embedded model whose tokenizer (and vocab size) tiny models use


def tiny_model(arch: str = "llama", *, seed: int = 0, hidden_size: int = 64, layers: int = 2) -> LoadedModel:
    """A 2-layer random model (float32, CPU) of ``arch`` sharing SmolLM2's tokenizer and vocabulary."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if arch not in ARCHITECTURES:
        raise ValueError(f"tiny_model arch {arch!r} is not one of {ARCHITECTURES}")
    model_dir, _ = embedded_model_dir(TOKENIZER_MODEL)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    config = AutoConfig.for_model(
        arch, vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, head_dim=hidden_size // 4,
        max_position_embeddings=2048, tie_word_embeddings=arch == "llama",
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    _ensure_padding(tokenizer)
    return LoadedModel(model, tokenizer, f"tiny-{arch}", None, "random")
