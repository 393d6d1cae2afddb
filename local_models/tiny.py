"""A tiny random-weight Llama, built offline, for tests and for trying a local model.

    python -m local_models.tiny .raygate/models/tiny

writes a Hugging Face model directory (config, safetensors weights, a byte-level BPE
tokenizer trained on a few lines, a chat template) that vLLM loads like any other Llama.
Nothing is downloaded. Its answers are random tokens: it exercises the serving path (engine,
batching, streaming, usage, timing), not the quality of anything. Four heads of 64 keep
head_dim at 64, which vLLM's CPU attention needs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# A Llama-style template: system, user and assistant turns, then the assistant's cue.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_CORPUS = [
    "raygate is a self-hosted AI gateway built as a Ray Serve application.",
    "Every request is tied to a person, checked by policy and written to the audit trail.",
    "Local models run as vLLM replicas inside the same Ray cluster as the gateway.",
    "The quick brown fox jumps over the lazy dog while the cat sleeps in the sun.",
    "Hello! How can I help you today? Tell me about the weather and the news.",
    "Numbers like 0 1 2 3 4 5 6 7 8 9 and symbols like {} [] () <> ? ! . , : ; appear too.",
]
_SPECIAL = ["<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]


def build_tiny_model(
    directory: str | Path,
    *,
    hidden_size: int = 256,
    heads: int = 4,
    layers: int = 2,
    vocab_size: int = 512,
    max_position_embeddings: int = 2048,
    seed: int = 0,
) -> Path:
    """Write a random-weight Llama and its tokenizer into `directory`; returns the path.

    Deterministic for a given seed. Rebuilding into a directory that holds one is a no-op.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = Path(directory)
    if (path / "config.json").exists() and (path / "tokenizer.json").exists():
        return path
    path.mkdir(parents=True, exist_ok=True)

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=_SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(path)

    config = LlamaConfig(
        vocab_size=bpe.get_vocab_size(),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(path, safe_serialization=True)
    # vLLM reads the chat template from tokenizer_config.json; make sure it is there.
    tok_config = path / "tokenizer_config.json"
    data = json.loads(tok_config.read_text())
    if "chat_template" not in data:
        data["chat_template"] = CHAT_TEMPLATE
        tok_config.write_text(json.dumps(data, indent=2))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("directory", help="where to write the model (created if missing)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = build_tiny_model(args.directory, seed=args.seed)
    print(f"tiny Llama written to {path}")


if __name__ == "__main__":
    main()
