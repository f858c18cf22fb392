"""The text side, all offline: a word tokenizer with an unknown-word token, a small convolutional sentence encoder,
and its pretraining on the dataset's captions by a joint image-text embedding objective (as Reed et al. pretrain
theirs), cached after first use.

Pretraining: a small image encoder and the text encoder map images and captions into one `dim`-dimensional unit
sphere; for a batch of images, each with one of its captions, the loss is the cross-entropy, both ways, of the
image-caption similarities (temperature TEMPERATURE) against the captions that fit each image. On the digits a
caption fits an image when its meaning (class and the attribute levels it names) agrees with the image's, so
captions of the same meaning are not pushed apart; on a caption folder a caption fits its own image (and the
images sharing that exact caption). The GAN then uses the frozen text encoder: phi(t).
"""

from __future__ import annotations

import hashlib
import os
import re

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pygan._io import atomic_torch_save
from pygan.metrics.classifier import cache_dir

PAD, UNK = "<pad>", "<unk>"
ENCODER_VERSION = 1  # bump when the encoder or its pretraining changes: cached encoders are then retrained
TEMPERATURE = 0.1
_WORD = re.compile(r"[a-z]+|[0-9]")


class Tokenizer:
    """Lower-case words and single digits; words outside the vocabulary become <unk> (never an error)."""

    def __init__(self, vocab: list[str]):
        if vocab[:2] != [PAD, UNK]:
            raise ValueError(f"a vocabulary starts with {PAD!r}, {UNK!r}")
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}

    @classmethod
    def fit(cls, captions: list[str]) -> "Tokenizer":
        words = sorted({w for c in captions for w in _WORD.findall(c.lower())})
        return cls([PAD, UNK] + words)

    @staticmethod
    def words(caption: str) -> list[str]:
        if not isinstance(caption, str):
            raise ValueError(f"a caption must be a string, got {type(caption).__name__}")
        words = _WORD.findall(caption.lower())
        if not words:
            raise ValueError(f"caption {caption!r} is empty: it needs at least one word (letters or digits)")
        return words

    def __call__(self, captions: list[str]) -> Tensor:
        """(B, L) int64 token ids, 0-padded to the longest caption."""
        if isinstance(captions, str):
            captions = [captions]
        if not captions:
            raise ValueError("no captions given")
        ids = [[self.index.get(w, 1) for w in self.words(c)] for c in captions]
        out = torch.zeros(len(ids), max(map(len, ids)), dtype=torch.int64)
        for i, row in enumerate(ids):
            out[i, :len(row)] = torch.tensor(row)
        return out

    def unknown(self, caption: str) -> list[str]:
        return [w for w in self.words(caption) if w not in self.index]


class TextEncoder(nn.Module):
    """Token ids (B, L) -> unit vectors (B, dim): word embeddings, two 3-wide convolutions (word order within a
    phrase: 'leaning left' vs 'left ...'), mean and max over the words, a linear layer."""

    def __init__(self, vocab_size: int, dim: int = 64, width: int = 96, embed: int = 48):
        super().__init__()
        self.config = dict(vocab_size=vocab_size, dim=dim, width=width, embed=embed)
        self.dim = dim
        self.embed = nn.Embedding(vocab_size, embed, padding_idx=0)
        self.conv = nn.Sequential(nn.Conv1d(embed, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv1d(width, width, 3, padding=1), nn.ReLU())
        self.out = nn.Linear(2 * width, dim)

    def forward(self, tokens: Tensor) -> Tensor:
        mask = (tokens > 0).unsqueeze(1).float()                    # (B, 1, L)
        h = self.conv(self.embed(tokens).transpose(1, 2)) * mask    # (B, width, L)
        mean = h.sum(2) / mask.sum(2).clamp_min(1)
        mx = h.masked_fill(mask == 0, float("-inf")).amax(2)
        return F.normalize(self.out(torch.cat([mean, mx], 1)), dim=1)


class ImageEncoder(nn.Module):
    """The image side of the pretraining only: images (B, C, S, S) -> unit vectors (B, dim)."""

    def __init__(self, channels: int, dim: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(256, dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.body(x), dim=1)


class Text:
    """A tokenizer and its frozen encoder: `embed(captions)` -> phi(t) (B, dim)."""

    def __init__(self, tokenizer: Tokenizer, encoder: TextEncoder, info: dict | None = None):
        self.tokenizer, self.encoder = tokenizer, encoder.eval().requires_grad_(False)
        self.info = info or {}

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @torch.no_grad()
    def embed(self, captions: list[str], batch: int = 1024) -> Tensor:
        if isinstance(captions, str):
            captions = [captions]
        return torch.cat([self.encoder(self.tokenizer(captions[i:i + batch])) for i in range(0, len(captions), batch)])

    def state_dict(self) -> dict:
        return {"vocab": self.tokenizer.vocab, "config": self.encoder.config, "state_dict": self.encoder.state_dict(),
                "info": self.info}

    @classmethod
    def from_state_dict(cls, state: dict) -> "Text":
        with torch.random.fork_rng():  # its init's draws must not move the caller's random stream
            enc = TextEncoder(**state["config"])
        enc.load_state_dict(state["state_dict"])
        return cls(Tokenizer(state["vocab"]), enc, state.get("info"))


def fits(data, caption_idx: Tensor, image_idx: Tensor) -> Tensor:
    """(len(image_idx), len(caption_idx)) bool: caption fits image (see the module docstring)."""
    if data.meanings is not None:
        m = data.meanings[caption_idx]                                     # (B, 3)
        cls, lv = data.labels[image_idx], data.levels[image_idx]          # (B,), (B, 2)
        ok = cls[:, None] == m[None, :, 0]
        for a in range(2):
            ok &= (m[None, :, 1 + a] < 0) | (m[None, :, 1 + a] == lv[:, a:a + 1])
        return ok
    same = data.owner[caption_idx][None, :] == image_idx[:, None]
    texts = [data.captions[int(i)] for i in caption_idx]
    mine = [[data.captions[int(j)] for j in range(int(data.first[i]), int(data.first[i] + data.count[i]))]
            for i in image_idx]
    return same | torch.tensor([[t in m for t in texts] for m in mine])


def pretrain(data, dim: int = 64, steps: int = 600, batch: int = 128, lr: float = 2e-3, seed: int = 0) -> Text:
    """The text encoder trained jointly with an image encoder on `data` (a CaptionedImages); see the module
    docstring. Deterministic (own generator); info holds the final caption -> image retrieval accuracy."""
    tok = Tokenizer.fit(data.captions)
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        text, image = TextEncoder(len(tok.vocab), dim), ImageEncoder(data.images.shape[1], dim)
    tokens = tok(data.captions)
    params = list(text.parameters()) + list(image.parameters())
    opt = torch.optim.Adam(params, lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=max(steps, 2))
    n = len(data)
    for _ in range(steps):
        img = torch.randint(0, n, (min(batch, n),), generator=g)
        cap = data.first[img] + (torch.rand(len(img), generator=g) * data.count[img]).long()
        target = fits(data, cap, img).float()
        logits = image(data.images[img]) @ text(tokens[cap]).T / TEMPERATURE
        loss = (-(target / target.sum(1, keepdim=True)) * logits.log_softmax(1)).sum(1).mean() \
            + (-(target / target.sum(0, keepdim=True)).T * logits.T.log_softmax(1)).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():  # how often a caption's nearest image (among 500) is one it fits
        img = torch.arange(min(n, 500))
        cap = data.first[img]
        best = (text(tokens[cap]) @ image(data.images[img]).T).argmax(1)
        acc = float(fits(data, cap, img).T[torch.arange(len(img)), best].float().mean())
    return Text(tok, text, {"retrieval_top1": acc, "loss": float(loss.detach()), "steps": steps})


def cached_text_encoder(data, dim: int = 64, steps: int = 600) -> Text:
    """pretrain(data, dim, steps), run on first use and cached (atomically) under cache_dir(), keyed by the
    captions and images themselves."""
    h = hashlib.sha1(f"{ENCODER_VERSION}-{dim}-{steps}-{torch.__version__}-{tuple(data.images.shape)}".encode())
    h.update("\n".join(data.captions).encode())
    h.update(data.owner.numpy().tobytes())
    h.update(data.images.detach().float().contiguous().numpy().tobytes())
    if data.meanings is not None:
        h.update(data.meanings.numpy().tobytes() + data.levels.numpy().tobytes() + data.labels.numpy().tobytes())
    path = os.path.join(cache_dir(), f"text_encoder_{h.hexdigest()[:16]}.pt")
    if os.path.isfile(path):
        try:
            return Text.from_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except Exception:
            pass  # unreadable cache: retrain and overwrite
    text = pretrain(data, dim, steps)
    atomic_torch_save(text.state_dict(), path)
    return text
