"""Token-wise query encoders for NLQ: turn query text into ``[L, D]`` token features.

The report uses CLIP ViT-L/14 text hidden states (up to 48 tokens x 768). egoasl never
downloads weights: the ``clip`` and ``sentence-transformers`` encoders read a local
folder the user downloaded once, and need the optional extra ``pip install egoasl[text]``.
The ``hashed`` encoder needs nothing: every word gets a fixed pseudo-random vector
derived from its hash (a dependency-free baseline, and what tests use). The ``synthetic``
encoder plays CLIP's part for ``egoasl synth`` data (``--weights`` = the synthetic folder):
the noise-free word embeddings of its hidden world, so that new queries (e.g. ``egoasl naq
build`` output) get features aligned with the video as the generated query features are.

Add an encoder by subclassing :class:`TextEncoder` and registering it in ``ENCODERS``.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import torch

from egoasl.errors import EgoaslError


class TextEncoder:
    """Encodes a list of texts into token features, one ``[L_i, dim]`` float32 tensor each."""

    dim: int

    def encode(self, texts: list[str], max_tokens: int) -> list[torch.Tensor]:
        raise NotImplementedError


class HashedWordEncoder(TextEncoder):
    """Lower-cased words (and ``?``) -> unit vectors seeded by a hash of the word."""

    def __init__(self, dim: int = 768):
        self.dim = dim

    def _vector(self, word: str) -> torch.Tensor:
        seed = int.from_bytes(hashlib.sha256(word.encode("utf-8")).digest()[:8], "little")
        vector = torch.randn(self.dim, generator=torch.Generator().manual_seed(seed))
        return vector / vector.norm()

    def encode(self, texts: list[str], max_tokens: int) -> list[torch.Tensor]:
        out = []
        for text in texts:
            words = re.findall(r"[\w']+|\?", text.lower())[:max_tokens] or ["<empty>"]
            out.append(torch.stack([self._vector(w) for w in words]))
        return out


def _local_weights(path: str | None, what: str, example: str) -> Path:
    if not path:
        raise EgoaslError(f"the {what} encoder needs --weights DIR, a local copy of its weights ({example})")
    folder = Path(path)
    if not folder.exists():
        raise EgoaslError(
            f"{folder}: {what} weights not found. egoasl never downloads at run time: download them once "
            f"({example}) and pass that folder with --weights"
        )
    return folder


class ClipTextEncoder(TextEncoder):
    """CLIP text-encoder last hidden states (BOS/EOS included), from a local Hugging Face folder."""

    def __init__(self, weights: str | None, device: str = "cpu"):
        folder = _local_weights(weights, "CLIP", "e.g. huggingface-cli download openai/clip-vit-large-patch14 --local-dir DIR")
        try:
            from transformers import CLIPTextModel, CLIPTokenizer
        except ImportError:
            raise EgoaslError("the clip encoder needs the optional extra: pip install 'egoasl[text]'") from None
        self.tokenizer = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
        self.model = CLIPTextModel.from_pretrained(folder, local_files_only=True).to(device).eval()
        self.device = device
        self.dim = self.model.config.hidden_size

    @torch.no_grad()
    def encode(self, texts: list[str], max_tokens: int) -> list[torch.Tensor]:
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
        hidden = self.model(**{k: v.to(self.device) for k, v in tokens.items()}).last_hidden_state
        lengths = tokens["attention_mask"].sum(1).tolist()
        return [hidden[i, :n].float().cpu() for i, n in enumerate(lengths)]


class SentenceTransformerEncoder(TextEncoder):
    """Token embeddings of a local sentence-transformers model folder."""

    def __init__(self, weights: str | None, device: str = "cpu"):
        folder = _local_weights(weights, "sentence-transformers", "e.g. a folder saved with SentenceTransformer.save")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise EgoaslError("the sentence-transformers encoder needs: pip install sentence-transformers") from None
        self.model = SentenceTransformer(str(folder), device=device)
        self.dim = self.model.get_sentence_embedding_dimension()

    @torch.no_grad()
    def encode(self, texts: list[str], max_tokens: int) -> list[torch.Tensor]:
        outputs = self.model.encode(texts, output_value="token_embeddings", convert_to_numpy=False)
        return [torch.as_tensor(o)[:max_tokens].float().cpu() for o in outputs]


class SyntheticWorldEncoder(TextEncoder):
    """Word embeddings of the hidden world behind an ``egoasl synth`` folder (its seed, scale and classes)."""

    def __init__(self, weights: str | None):
        from egoasl.data.synthetic import build_world, load_summary

        folder = _local_weights(weights, "synthetic", "the folder written by `egoasl synth`")
        summary = load_summary(folder)
        self.world = build_world(summary.seed, len(summary.classes), summary.scale)
        self.dim = self.world.text_dim

    def encode(self, texts: list[str], max_tokens: int) -> list[torch.Tensor]:
        from egoasl.data.synthetic import tokenize_query

        out = []
        for text in texts:
            words = tokenize_query(text)[:max_tokens] or ["<empty>"]
            out.append(torch.tensor(np.stack([self.world.word_embedding(w) for w in words]), dtype=torch.float32))
        return out


ENCODERS = {
    "hashed": lambda weights, device, dim: HashedWordEncoder(dim),
    "clip": lambda weights, device, dim: ClipTextEncoder(weights, device),
    "sentence-transformers": lambda weights, device, dim: SentenceTransformerEncoder(weights, device),
    "synthetic": lambda weights, device, dim: SyntheticWorldEncoder(weights),
}


def build_text_encoder(name: str, weights: str | None = None, device: str = "cpu", dim: int = 768) -> TextEncoder:
    """An encoder by name: ``hashed`` (no weights), ``clip`` or ``sentence-transformers`` (local weights),
    ``synthetic`` (the ``egoasl synth`` folder)."""
    if name not in ENCODERS:
        raise EgoaslError(f"unknown text encoder {name!r}; choose one of {', '.join(ENCODERS)}")
    return ENCODERS[name](weights, device, dim)


def text_feature_path(root: Path, clip_uid: str, annotation_uid: str, query_idx: int) -> Path:
    """Where the token features of one query live: ``root/<clip_uid>/<annotation_uid>_<query_idx>.pt``."""
    return Path(root) / clip_uid / f"{annotation_uid}_{query_idx}.pt"
