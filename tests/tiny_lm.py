"""A tiny random-weight Llama with its own byte-level BPE tokenizer, built offline in a test.

It loads through :class:`~llmrec.lm.hf.HFCausalLM` like any Hugging Face folder, in a second,
so the transformers backend's batching can be checked against its one-prompt path without the
packaged models. Weights are seeded: the same folder every time.
"""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "The user watched Toy Story, Heat and Casino, then rated them highly.",
    'Which item will the user choose next? "Movie 12" "Movie 3" "The Matrix" "Jumanji"',
    "Candidates: A. Movie 1 B. Movie 2 C. Movie 3 Answer: A B C D E",
    "Comedy Drama Action Thriller Romance 1995 1996 1997 (1998) user item profile",
]


def build_tiny_llama(folder: Path, *, seed: int = 0, std: float = 0.2) -> Path:
    """Save a 2-layer, 64-wide Llama and its tokenizer into ``folder``; returns ``folder``.
    ``std``: the init's standard deviation (larger than Llama's 0.02, so that next-token
    scores are spread apart rather than nearly tied)."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="</s>"
    )
    config = transformers.LlamaConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        initializer_range=std,
    )
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder
