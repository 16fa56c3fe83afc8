"""Synthetic click log in the reference schema, with hidden structure a DIN model can learn.

The world: categories in a few groups, items whose latent vectors sit near their category's and
whose popularity is Zipf-like, users with a handful of interest categories whose weights drift
over time, a gender/occupation profile and a Zipf-like activity. An impression draws a user (by
activity), a behaviour history from that user's interests at the times before it (newest last,
mostly short, some empty, some full) and a candidate (part from the user's current interests,
part from the popularity chart). Its click probability is ``sigmoid`` of::

    b0 + recent  * z(sum over the last steps of decay**age * exp(sharpness * (cos(cand, step) - 1)))
       + profile * z(gender x category-group table + occupation vector . item vector)
       + pop     * z(log item popularity) + user * z(user propensity)
       + cross   * z(random deep net of (item vector, occupation, gender)) + noise * N(0, 1)
       + feature * (z(-tanh(log price - median)) + z(mean effect of the row's tags))   [feature_strength > 0]

The recent-match kernel is sharp and non-linear, so pooling the history into one mean vector
loses it while attention of the candidate over the steps keeps it; the profile term is an
interaction, centred so that it has no item-only or gender-only part. The cross term (off by
default) is a fixed random two-layer tanh network of the candidate's latent vector and the user's
profile: a high-order interaction where a wider, deeper tower has the edge (the regime in which a
booster can know more than the light tower). ``z()`` standardises each
signal on a calibration sample, so a strength is that signal's logit standard deviation, and
``b0`` is solved for (Newton, bisection fallback) so the mean click probability on that sample
is ``base_ctr``. The noise is unobserved per impression: the oracle ``click_prob`` integrates it
out (the best any model can do from the logged columns) and labels are Bernoulli(click_prob).
Raw ids are splitmix64 hashes (62 bits): sparse and huge, like production ids.

With ``feature_strength`` > 0 two more columns carry part of the signal (their own random
streams: every other column stays as without them): ``price`` (numeric, per impression: the
item's list price times a random discount, 5 % missing) and ``tags`` (multi-hot, per impression:
0-6 creative tags of 64, each with its own effect); the feature spec declares them (price
bucketised at the calibration sample's deciles, tags mean-pooled).

With ``brand_strength`` > 0 a second behaviour sequence carries part of the signal (its own
random streams too): ``brand_id`` (the candidate's brand, one of ``n_brands``) and
``hist_brand_id`` (the brands the user followed recently, newest last, its own length: mostly
the user's few favourite brands, some popular ones); the signal is the recency-weighted count of
steps whose brand is the candidate's. The feature spec declares it as a second sequence group,
``brand``, with its own attention (``FeatureSpec.sequence_groups``).
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rocket_ctr.errors import FieldError, InputError
from rocket_ctr.features.hashing import splitmix64
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.io.parquet_schema import arrow_schema

GENDERS = ("F", "M", "U")
OCCUPATIONS = ("other", "academic/educator", "artist", "clerical/admin", "college/grad student",
               "customer service", "doctor/health care", "executive/managerial", "farmer",
               "homemaker", "K-12 student", "lawyer", "programmer", "retired", "sales/marketing",
               "scientist", "self-employed", "technician/engineer", "tradesman/craftsman",
               "unemployed", "writer")
BLOCK = 1 << 15  # rows per generation step; fixed, so the data never depends on file sizes
SIGNALS = ("recent", "profile", "pop", "user", "cross")
BRAND_SIGNALS = ("brand",)  # with brand_strength > 0 (columns brand_id, hist_brand_id)
BRAND_FAVOURITES, BRAND_HIST_MEAN, BRAND_FROM_FAVOURITES, BRAND_DECAY = 3, 6.0, 0.7, 0.8
FEATURE_SIGNALS = ("price", "tags")  # with feature_strength > 0 (columns price, tags)
N_TAGS, MAX_TAGS, PRICE_MISSING = 64, 6, 0.05
CROSS_HIDDEN = (256, 64)  # widths of the cross term's random network


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """Every knob of the generated world (defaults: a quick demo on 2 cores).

    Sizes: ``n_rows`` impressions, ``n_users``/``n_items``/``n_cates`` entities in ``n_groups``
    category groups, histories of at most ``max_history`` steps (lognormal length with mean
    ``hist_mean``, ``empty_hist_frac`` empty). Structure: ``latent_dim``, ``interests`` categories
    per user, ``drift_cycles``/``drift_amplitude`` of the interest weights over the log's span,
    ``step_gap`` (fraction of the span between history steps), ``explore`` (share of history
    steps and ``1 - cand_from_interest`` of candidates drawn from popularity alone), Zipf
    exponents. Signal strengths (logit std each): ``recent_strength`` (match of the candidate with
    the last ``match_window`` steps, weights ``recency_decay**age``), ``profile_strength``,
    ``pop_strength``, ``user_strength``, ``cross_strength`` (0 = off), ``noise_strength``,
    ``feature_strength`` (each of the price and tags signals; 0 = off, no such columns),
    ``brand_strength`` (the brand-sequence signal over ``n_brands`` brands; 0 = off, no such columns).
    Sampling: ``negative_rate`` < 1 keeps every click of the *train* split and each negative with
    that probability (a log downsampled upstream; the feature spec records the rate); the test
    split stays at the full rate, so calibration can be checked against it.
    """

    n_rows: int = 200_000
    n_users: int = 20_000
    n_items: int = 20_000
    n_cates: int = 200
    n_groups: int = 8
    max_history: int = 50
    hist_mean: float = 10.0
    hist_sigma: float = 0.9
    empty_hist_frac: float = 0.03
    latent_dim: int = 16
    interests: int = 4
    drift_cycles: float = 2.0
    drift_amplitude: float = 1.5
    step_gap: float = 0.02
    explore: float = 0.15
    cand_from_interest: float = 0.5
    item_zipf: float = 0.9
    user_zipf: float = 0.8
    cate_zipf: float = 0.7
    item_spread: float = 0.5
    match_window: int = 10
    recency_decay: float = 0.7
    match_sharpness: float = 4.0
    recent_strength: float = 0.9
    profile_strength: float = 0.6
    pop_strength: float = 0.4
    user_strength: float = 0.4
    cross_strength: float = 0.0
    feature_strength: float = 0.0
    brand_strength: float = 0.0
    n_brands: int = 50
    noise_strength: float = 0.8
    base_ctr: float = 0.05
    test_fraction: float = 0.1
    negative_rate: float = 1.0
    seed: int = 0
    start_ts: int = 1_700_000_000
    span_seconds: int = 30 * 86_400

    def validate(self) -> None:
        """Raises FieldError naming the first bad field (every knob is a number >= 0)."""
        for f in dataclasses.fields(self):
            v, integer = getattr(self, f.name), type(f.default) is int
            ok = isinstance(v, (int, np.integer)) if integer else isinstance(v, (int, float, np.number))
            if isinstance(v, bool) or not ok or not np.isfinite(v):
                kind = "an integer" if integer else "a finite number"
                raise FieldError(f"{{{f.name}}} must be {kind}, got {v!r}")
            low = 1 if f.name in _AT_LEAST_ONE else 0
            if v < low and f.name not in _INTERVALS:  # those say their interval below
                raise FieldError(f"{{{f.name}}} must be >= {low}, got {v}")
        for name, text in _INTERVALS.items():
            v = getattr(self, name)
            if not ((0 <= v if text[0] == "[" else 0 < v) and (v <= 1 if text[-1] == "]" else v < 1)):
                raise FieldError(f"{{{name}}} must be in {text}, got {v}")
        if self.hist_mean <= 0:
            raise FieldError(f"{{hist_mean}} must be > 0, got {self.hist_mean}")
        if self.n_items < self.n_cates:
            raise FieldError(f"{{n_items}} ({self.n_items}) must be >= {{n_cates}} ({self.n_cates}): "
                             "every category needs an item")
        if round(self.n_rows * (1 - self.test_fraction)) < 1:
            raise FieldError(f"{{n_rows}}={self.n_rows} with {{test_fraction}}={self.test_fraction} "
                             "leaves no training rows")


_AT_LEAST_ONE = {"n_rows", "n_users", "n_items", "n_cates", "n_groups", "max_history", "latent_dim",
                 "interests", "match_window", "span_seconds", "n_brands"}
_INTERVALS = {"base_ctr": "(0, 1)", "test_fraction": "[0, 1)", "recency_decay": "(0, 1]",
              "empty_hist_frac": "[0, 1]", "explore": "[0, 1]", "cand_from_interest": "[0, 1]",
              "negative_rate": "(0, 1]"}


def hashed_ids(n: int, seed: int, namespace: int) -> np.ndarray:
    """Sparse raw ids for dense indices 0..n-1: splitmix64(index + key) masked to 62 bits.

    Args:
        n: how many ids.
        seed, namespace: pick the key, so users, items and categories of one seed never share ids.
    Returns:
        int64 array of non-negative, distinct (up to 2**-62 odds), huge ids.
    """
    key = splitmix64(np.array([(seed * 16 + namespace) % 2**64], dtype=np.uint64))
    return (splitmix64(np.arange(n, dtype=np.uint64) + key) & np.uint64((1 << 62) - 1)).astype(np.int64)


def _zipf(n, alpha, rng):
    """Zipf weights 1/rank**alpha over a random permutation of ranks, normalised."""
    w = (rng.permutation(n) + 1.0) ** -alpha
    return w / w.sum()


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _zscore(v):
    return (v - v.mean()) / (v.std() + 1e-12)


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free


class _Sampler:
    """Inverse-CDF sampling in O(1): a guide table jumps near the answer, a few steps finish it."""

    def __init__(self, weights: np.ndarray):
        self.cdf = np.cumsum(weights / weights.sum())
        self.guide = np.searchsorted(self.cdf, np.arange(4 * len(weights)) / (4 * len(weights)), side="right")

    def index(self, x: np.ndarray) -> np.ndarray:
        """First i with cdf[i] > x, for x in [0, 1)."""
        last = len(self.cdf) - 1
        idx = np.minimum(self.guide[(x * len(self.guide)).astype(np.int64)], last)
        todo = np.flatnonzero(self.cdf[idx] <= x)
        while todo.size:
            idx[todo] = np.minimum(idx[todo] + 1, last)
            todo = todo[(self.cdf[idx[todo]] <= x[todo]) & (idx[todo] < last)]
        return idx

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.index(rng.random(n))


class _World:
    """Entities and latent structure, built once from the seed; samples impression blocks."""

    def __init__(self, cfg: GeneratorConfig, rng: np.random.Generator):
        self.cfg = c = cfg
        d = c.latent_dim
        self.cate_group = rng.integers(c.n_groups, size=c.n_cates)
        group_vec = rng.normal(size=(c.n_groups, d))
        self.cate_vec = _unit(group_vec[self.cate_group] + 0.8 * rng.normal(size=(c.n_cates, d)))
        cate_pop = _zipf(c.n_cates, c.cate_zipf, rng)
        # every category gets one item, the rest by category popularity; items sorted by category
        extra = rng.choice(c.n_cates, size=c.n_items - c.n_cates, p=cate_pop)
        self.item_cate = np.sort(np.concatenate([np.arange(c.n_cates), extra]))
        noise = c.item_spread * rng.normal(size=(c.n_items, d))
        self.item_vec = _unit(self.cate_vec[self.item_cate] + noise).astype(np.float32)
        item_pop = _zipf(c.n_items, c.item_zipf, rng)
        self.item_logpop = np.log(item_pop)
        self.items = _Sampler(item_pop)
        starts = np.searchsorted(self.item_cate, np.arange(c.n_cates))
        ends = np.append(starts[1:], c.n_items)
        self.cate_lo = np.append(0.0, self.items.cdf)[starts]  # popularity mass before the category
        self.cate_hi = self.items.cdf[ends - 1]
        self.cate_first, self.cate_last = starts, ends - 1

        activity = _zipf(c.n_users, c.user_zipf, rng)
        self.users = _Sampler(activity)
        self.gender = rng.choice(len(GENDERS), size=c.n_users, p=[0.48, 0.47, 0.05])
        occ_p = _zipf(len(OCCUPATIONS), 0.6, rng)
        self.occupation = rng.choice(len(OCCUPATIONS), size=c.n_users, p=occ_p)
        self.slot_cate = rng.choice(c.n_cates, size=(c.n_users, c.interests), p=cate_pop)
        self.slot_phase = rng.random((c.n_users, c.interests))
        self.freq = c.drift_cycles * rng.uniform(0.5, 1.5, size=c.n_users)
        self._wave = np.exp(c.drift_amplitude * np.sin(2 * np.pi * np.arange(4096) / 4096))
        # heavy users click a little less per impression, plus an individual propensity
        self.propensity = rng.normal(size=c.n_users) - 0.5 * _zscore(np.log(activity))
        table = rng.normal(size=(len(GENDERS), c.n_groups))
        self.gender_group = table - table.mean(0) - table.mean(1, keepdims=True) + table.mean()
        occ_vec = rng.normal(size=(len(OCCUPATIONS), d))
        self.occ_vec = (occ_vec - occ_p @ occ_vec).astype(np.float32)  # centred: no item-only effect
        # its own random stream: switching the cross term on leaves every other signal as it was
        self.cross = _CrossNet(c, np.random.default_rng([c.seed, 0xC2055])) if c.cross_strength else None
        if c.feature_strength:  # its own random stream too
            feature_rng = np.random.default_rng([c.seed, 0xFEA7])
            self.list_price = np.exp(feature_rng.normal(3.0, 0.6, c.n_items))
            self.tag_effect = feature_rng.normal(size=N_TAGS)
        if c.brand_strength:  # and its own
            brand_rng = np.random.default_rng([c.seed, 0xB7A4D])
            self.item_brand = brand_rng.integers(c.n_brands, size=c.n_items)
            self.user_brands = brand_rng.integers(c.n_brands, size=(c.n_users, BRAND_FAVOURITES))
            self.brands = _Sampler(_zipf(c.n_brands, 0.8, brand_rng))

    def _item_in_cate(self, cate, rng):
        x = self.cate_lo[cate] + rng.random(len(cate)) * (self.cate_hi[cate] - self.cate_lo[cate])
        return np.clip(self.items.index(x), self.cate_first[cate], self.cate_last[cate])

    def _interest(self, users, tau, rng):
        """A category from each user's drifting interest weights at time ``tau`` (fraction of span)."""
        phase = self.freq[users, None] * tau[:, None] + self.slot_phase[users]
        # weights exp(amplitude * sin(2 pi phase)), looked up in a table: far cheaper than sin + exp
        cum = np.cumsum(self._wave[((phase % 1.0) * len(self._wave)).astype(np.int64)], axis=1)
        slot = (cum < rng.random(len(users))[:, None] * cum[:, -1:]).sum(axis=1)
        return self.slot_cate[users, slot]

    def _mixed(self, users, tau, p_interest, rng):
        """Items: from the user's interests with probability p_interest, else by popularity."""
        items = self.items.sample(rng, len(users))
        pick = np.flatnonzero(rng.random(len(users)) < p_interest)
        items[pick] = self._item_in_cate(self._interest(users[pick], tau[pick], rng), rng)
        return items

    def sample(self, t: np.ndarray, rng: np.random.Generator, feature_rng: np.random.Generator | None = None,
               brand_rng: np.random.Generator | None = None) -> dict:
        """One block of impressions at times ``t`` (fractions of the span): dense indices + raw signals
        (and, with ``feature_strength``, the price and tags drawn from ``feature_rng``; with
        ``brand_strength``, the brand sequences drawn from ``brand_rng``)."""
        c, n = self.cfg, len(t)
        users = self.users.sample(rng, n)
        mu = np.log(c.hist_mean) - c.hist_sigma ** 2 / 2  # lognormal with mean hist_mean
        lengths = np.rint(np.exp(rng.normal(mu, c.hist_sigma, n))).astype(np.int64)
        lengths[rng.random(n) < c.empty_hist_frac] = 0
        lengths = np.minimum(lengths, c.max_history)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        row = np.repeat(np.arange(n), lengths)
        age = offsets[row + 1] - 1 - np.arange(offsets[-1])  # 0 = newest step
        hist = self._mixed(users[row], t[row] - (age + 1) * c.step_gap, 1 - c.explore, rng)
        cand = self._mixed(users, t, c.cand_from_interest, rng)

        near = age < c.match_window
        r, a = row[near], age[near]
        cos = np.einsum("ij,ij->i", self.item_vec[hist[near]], self.item_vec[cand[r]])
        kernel = np.exp(c.match_sharpness * (cos - 1.0)) * c.recency_decay ** a
        cand_vec = self.item_vec[cand]
        signals = {
            "recent": np.bincount(r, weights=kernel, minlength=n),
            "profile": self.gender_group[self.gender[users], self.cate_group[self.item_cate[cand]]]
            + np.einsum("ij,ij->i", self.occ_vec[self.occupation[users]], cand_vec),
            "pop": self.item_logpop[cand],
            "user": self.propensity[users],
            "cross": self.cross(cand_vec, self.occupation[users], self.gender[users]) if self.cross else np.zeros(n),
        }
        block = {"users": users, "cand": cand, "hist": hist, "offsets": offsets, "signals": signals}
        if c.feature_strength:
            self._features(block, feature_rng)
        if c.brand_strength:
            self._brands(block, brand_rng)
        return block

    def _brands(self, block: dict, rng: np.random.Generator) -> None:
        """Per impression: the brands the user followed recently (newest last) and the match signal."""
        c, users, cand = self.cfg, block["users"], block["cand"]
        n = len(cand)
        lengths = np.minimum(rng.poisson(BRAND_HIST_MEAN, n), c.max_history)
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        row = np.repeat(np.arange(n), lengths)
        age = offsets[row + 1] - 1 - np.arange(offsets[-1])  # 0 = newest step
        steps = self.brands.sample(rng, len(row))
        favourite = rng.random(len(row)) < BRAND_FROM_FAVOURITES
        pick = rng.integers(BRAND_FAVOURITES, size=len(row))
        steps[favourite] = self.user_brands[users[row[favourite]], pick[favourite]]
        match = (steps == self.item_brand[cand][row]) * BRAND_DECAY ** age
        block["signals"]["brand"] = np.bincount(row, weights=match, minlength=n)
        block.update(brand_hist=steps, brand_offsets=offsets)

    def _features(self, block: dict, rng: np.random.Generator) -> None:
        """Per impression: a price (list price x discount; some missing) and 0..MAX_TAGS tags, with signals."""
        n = len(block["cand"])
        log_price = np.log(self.list_price[block["cand"]]) + rng.normal(0.0, 0.6, n)
        price = np.exp(log_price)
        price[rng.random(n) < PRICE_MISSING] = np.nan  # missing: the model sees its default
        counts = np.minimum(rng.poisson(2.0, n), MAX_TAGS)
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        tags = rng.integers(0, N_TAGS, offsets[-1])
        effect = np.bincount(np.repeat(np.arange(n), counts), weights=self.tag_effect[tags], minlength=n)
        block["signals"]["price"] = np.where(np.isnan(price), 0.0, -np.tanh(log_price - 3.0))
        block["signals"]["tags"] = effect / np.maximum(counts, 1)
        block.update(price=price, tags=tags, tag_offsets=offsets)


class _CrossNet:
    """A fixed random tanh network of (item latent vector, occupation, gender): the cross signal."""

    def __init__(self, cfg: GeneratorConfig, rng: np.random.Generator):
        self.occ_code = rng.normal(size=(len(OCCUPATIONS), 8)).astype(np.float32)
        self.gender_code = rng.normal(size=(len(GENDERS), 4)).astype(np.float32)
        widths = (cfg.latent_dim + 12, *CROSS_HIDDEN)
        # weights scaled so the units work in tanh's curved range: a sharply non-linear function
        self.layers = [((2.0 / np.sqrt(a)) * rng.normal(size=(a, b)).astype(np.float32),
                        0.5 * rng.normal(size=b).astype(np.float32)) for a, b in zip(widths, widths[1:])]
        self.out = rng.normal(size=widths[-1]).astype(np.float32)

    def __call__(self, item_vec, occupation, gender) -> np.ndarray:
        h = np.concatenate([item_vec, self.occ_code[occupation], self.gender_code[gender]], axis=1)
        for weights, bias in self.layers:
            h = np.tanh(h @ weights + bias)
        return (h @ self.out).astype(np.float64)


class _Calibration:
    """Signal standardisation and intercept from a sample, so every block uses the same scale."""

    _nodes, _weights = np.polynomial.hermite_e.hermegauss(8)

    def __init__(self, world: _World, rng: np.random.Generator):
        cfg = world.cfg
        n = min(1 << 17, max(cfg.n_rows, 1 << 15))  # enough for ~1e-3 relative error in the mean CTR
        blocks = [world.sample(rng.random(min(BLOCK, n - i)), rng, np.random.default_rng([cfg.seed, 5, i]),
                               np.random.default_rng([cfg.seed, 7, i]))
                  for i in range(0, n, BLOCK)]
        names = SIGNALS + (FEATURE_SIGNALS if cfg.feature_strength else ()) + \
            (BRAND_SIGNALS if cfg.brand_strength else ())
        signals = {k: np.concatenate([block["signals"][k] for block in blocks]) for k in names}
        self.stats = {k: (float(v.mean()), float(v.std()) + 1e-12) for k, v in signals.items()}
        self.strength = {k: cfg.feature_strength if k in FEATURE_SIGNALS else getattr(cfg, f"{k}_strength")
                         for k in names}
        prices = np.concatenate([block["price"] for block in blocks]) if cfg.feature_strength else None
        self.prices = prices[np.isfinite(prices)] if prices is not None else None  # the spec's fit
        self.noise = cfg.noise_strength
        base = self.logit(signals, 0.0)
        # Newton on the mean click probability (increasing in b0), bisection when it leaves the bracket
        lo, hi, b = -50.0, 50.0, float(np.log(cfg.base_ctr / (1 - cfg.base_ctr)))
        for _ in range(100):
            p, slope = self.prob(base + b, slope=True)
            err = p.mean() - cfg.base_ctr
            if abs(err) < 1e-10:
                break
            lo, hi = (b, hi) if err < 0 else (lo, b)
            b -= err / max(slope.mean(), 1e-12)
            b = b if lo < b < hi else (lo + hi) / 2
        self.intercept = b

    def logit(self, signals, intercept=None):
        b = self.intercept if intercept is None else intercept
        return b + sum(self.strength[k] * (signals[k] - m) / s for k, (m, s) in self.stats.items())

    def prob(self, logit, slope=False):
        """E[sigmoid(logit + noise * N(0,1))] by Gauss-Hermite quadrature (and d/dlogit)."""
        s = _sigmoid(logit[:, None] + self.noise * self._nodes)
        p = s @ self._weights / np.sqrt(2 * np.pi)
        return (p, (s * (1 - s)) @ self._weights / np.sqrt(2 * np.pi)) if slope else p


def schema(with_oracle: bool = False, features: bool = False, brands: bool = False) -> pa.Schema:
    """The reference click-log schema (plus ``price`` float64 and ``tags`` list<int64> with
    ``features``, ``brand_id`` int64 and ``hist_brand_id`` list<int64> with ``brands``,
    ``click_prob`` float64 with the oracle)."""
    reference = arrow_schema(FeatureSpec())
    if features:
        reference = reference.append(pa.field("price", pa.float64())).append(pa.field("tags", pa.list_(pa.int64())))
    if brands:
        reference = reference.append(pa.field("brand_id", pa.int64()))
        reference = reference.append(pa.field("hist_brand_id", pa.list_(pa.int64())))
    return reference.append(pa.field("click_prob", pa.float64())) if with_oracle else reference


class _SplitWriter:
    """Streams one split into ``part-NNNNN.parquet`` files of <= rows_per_file rows, exact row groups."""

    def __init__(self, folder: Path, schema_: pa.Schema, rows_per_file: int, row_group_size: int):
        self.folder, self.schema = folder, schema_
        self.rows_per_file, self.row_group_size = rows_per_file, row_group_size
        self.files, self.rows, self.clicks = [], 0, 0
        self._pending, self._buffered, self._in_file, self._writer = [], 0, 0, None

    def write(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._buffered += table.num_rows
        self.clicks += int(pc.sum(table["label"]).as_py() or 0)
        while self._buffered >= self._next_group():
            self._emit(self._next_group())

    def close(self) -> None:
        if self._buffered:
            self._emit(self._buffered)
        if self._writer is not None:
            self._writer.close()

    def _next_group(self) -> int:
        return min(self.row_group_size, self.rows_per_file - self._in_file)

    def _emit(self, k: int) -> None:
        data = pa.concat_tables(self._pending)
        if self._writer is None:
            path = self.folder / f"part-{len(self.files):05d}.parquet"
            self._writer = pq.ParquetWriter(path, self.schema)
            self.files.append(str(path))
        self._writer.write_table(data.slice(0, k), row_group_size=k)
        self._pending = [data.slice(k)] if data.num_rows > k else []
        self._buffered -= k
        self.rows += k
        self._in_file += k
        if self._in_file == self.rows_per_file:
            self._writer.close()
            self._writer, self._in_file = None, 0


def _table(world, calib, block, t, rng, cfg, ids, with_oracle) -> pa.Table:
    prob = calib.prob(calib.logit(block["signals"]))
    label = (rng.random(len(t)) < prob).astype(np.int64)
    offsets = pa.array(block["offsets"].astype(np.int32))
    hist, cand, users = block["hist"], block["cand"], block["users"]
    columns = {
        "user_id": ids["user"][users], "item_id": ids["item"][cand],
        "cate_id": ids["cate"][world.item_cate[cand]],
        "hist_item_id": pa.ListArray.from_arrays(offsets, pa.array(ids["item"][hist])),
        "hist_cate_id": pa.ListArray.from_arrays(offsets, pa.array(ids["cate"][world.item_cate[hist]])),
        "user_gender": pa.array(GENDERS).take(world.gender[users]),
        "user_occupation": pa.array(OCCUPATIONS).take(world.occupation[users]),
        "ts": cfg.start_ts + np.floor(t * cfg.span_seconds).astype(np.int64),
        "label": label,
    }
    if cfg.feature_strength:
        columns["price"] = block["price"]
        columns["tags"] = pa.ListArray.from_arrays(pa.array(block["tag_offsets"].astype(np.int32)),
                                                   pa.array(ids["tag"][block["tags"]]))
    if cfg.brand_strength:
        columns["brand_id"] = ids["brand"][world.item_brand[cand]]
        columns["hist_brand_id"] = pa.ListArray.from_arrays(pa.array(block["brand_offsets"].astype(np.int32)),
                                                            pa.array(ids["brand"][block["brand_hist"]]))
    if with_oracle:
        columns["click_prob"] = prob
    return pa.table(columns, schema=schema(with_oracle, bool(cfg.feature_strength), bool(cfg.brand_strength)))


def generate(out_dir, config: GeneratorConfig | None = None, *, with_oracle: bool = False,
             rows_per_file: int = 1_000_000, row_group_size: int = 65_536, days: int = 0, **params) -> dict:
    """Generates a click log into ``out_dir/{train,test}/part-NNNNN.parquet``, streaming.

    Test rows are the last ``test_fraction`` of time. With ``days`` > 0 the log spans that many
    days (``span_seconds``) and is split by day instead, into ``out_dir/day-01/`` ... (every row of
    a day, at the full rate: ``test_fraction`` and ``negative_rate`` do not apply): the interests
    drift from one day to the next, the setting of daily retraining and warm starts.
    Rerunning replaces a previous generated log in ``out_dir`` (other Parquet parts there are
    refused, never deleted); ``params.json`` says ``"complete": true`` once everything is written.
    Same seed and params give the same data.

    Args:
        out_dir: output folder (created if missing).
        config: structural knobs; ``params`` (e.g. ``n_rows=10_000, seed=3``) override its fields.
        with_oracle: also write ``click_prob``, the true click probability of each row.
        rows_per_file: a new part file every this many rows.
        row_group_size: rows per Parquet row group.
    Returns:
        summary dict: paths (``out_dir``, ``<split>_files`` per split (``train``/``test``, or
        ``day-01``...), ``params``, ``feature_spec``), ``splits``, ``rows`` and realised ``ctr`` per
        split (and ``all``), ``seconds``.
    """
    fields = {f.name for f in dataclasses.fields(GeneratorConfig)}
    unknown = sorted(set(params) - fields)
    if unknown:
        raise InputError(f"unknown generator parameters {unknown}")
    if isinstance(days, bool) or not isinstance(days, (int, np.integer)) or days < 0:
        raise FieldError(f"{{days}} must be an integer >= 0, got {days!r}")
    if days:
        params = {**params, "span_seconds": int(days) * 86_400, "test_fraction": 0.0, "negative_rate": 1.0}
    cfg = dataclasses.replace(config or GeneratorConfig(), **params)
    cfg.validate()
    splits = tuple(f"day-{d + 1:02d}" for d in range(days)) if days else ("train", "test")
    for name, value in (("rows_per_file", rows_per_file), ("row_group_size", row_group_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise FieldError(f"{{{name}}} must be an integer >= 1, got {value!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"output {out} exists and is not a directory")
    started = time.perf_counter()
    old_parts = [p for split in ("train", "test", "day-*") for p in out.glob(f"{split}/part-*.parquet")]
    if old_parts and _generator_of(out / "params.json") != __name__:
        raise InputError(f"{out} holds Parquet parts this generator did not write; "
                         "choose another output folder")
    record = {"generator": __name__, "complete": False, "config": dataclasses.asdict(cfg),
              "with_oracle": with_oracle, "rows_per_file": rows_per_file, "row_group_size": row_group_size,
              "days": days}
    try:
        for split in splits:
            (out / split).mkdir(parents=True, exist_ok=True)
        (out / "params.json").write_text(json.dumps(record, indent=2) + "\n")  # in progress
    except OSError as err:
        raise InputError(f"cannot write to {out}: {err.strerror or err}") from None
    for old in old_parts:  # a rerun replaces the previous generated log
        old.unlink()
    writers = {split: _SplitWriter(out / split, schema(with_oracle, bool(cfg.feature_strength),
                                                       bool(cfg.brand_strength)), rows_per_file, row_group_size)
               for split in splits}

    world = _World(cfg, np.random.default_rng([cfg.seed, 0]))
    calib = _Calibration(world, np.random.default_rng([cfg.seed, 1]))
    ids = {name: hashed_ids(n, cfg.seed, ns) for ns, (name, n) in
           enumerate([("user", cfg.n_users), ("item", cfg.n_items), ("cate", cfg.n_cates), ("tag", N_TAGS),
                      ("brand", cfg.n_brands)])}
    n_train = int(round(cfg.n_rows * (1 - cfg.test_fraction)))
    for b, start in enumerate(range(0, cfg.n_rows, BLOCK)):
        rng = np.random.default_rng([cfg.seed, 2, b])
        index = np.arange(start, min(start + BLOCK, cfg.n_rows))
        t = (index + rng.random(len(index))) / cfg.n_rows  # sorted: row i lies in [i/n, (i+1)/n)
        block = world.sample(t, rng, np.random.default_rng([cfg.seed, 4, b]), np.random.default_rng([cfg.seed, 6, b]))
        table = _table(world, calib, block, t, rng, cfg, ids, with_oracle)
        if days:  # t is sorted: each day is one slice of the block
            bounds = np.searchsorted(t, np.arange(days + 1) / days)
            for day, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
                if hi > lo:
                    writers[splits[day]].write(table.slice(int(lo), int(hi - lo)))
            continue
        cut = min(max(n_train - start, 0), len(index))
        if cut:
            writers["train"].write(_downsampled(table.slice(0, cut), cfg.negative_rate,
                                                np.random.default_rng([cfg.seed, 3, b])))
        if cut < len(index):
            writers["test"].write(table.slice(cut))
    for w in writers.values():
        w.close()

    spec_path = out / "feature_spec.json"
    feature_spec(cfg, calib.prices).save(spec_path)
    rows = {s: w.rows for s, w in writers.items()}
    ctr = {s: w.clicks / w.rows if w.rows else None for s, w in writers.items()}
    ctr["all"] = sum(w.clicks for w in writers.values()) / cfg.n_rows
    record.update(complete=True, intercept=calib.intercept, signal_stats=calib.stats, rows=rows, ctr=ctr,
                  files={s: [Path(f).name for f in w.files] for s, w in writers.items()})
    (out / "params.json").write_text(json.dumps(record, indent=2) + "\n")
    return {"out_dir": str(out), **{f"{s}_files": w.files for s, w in writers.items()}, "splits": splits,
            "params": str(out / "params.json"), "feature_spec": str(spec_path), "rows": rows, "ctr": ctr,
            "seconds": time.perf_counter() - started}


def _downsampled(table: pa.Table, rate: float, rng: np.random.Generator) -> pa.Table:
    """Every click of ``table`` and each negative with probability ``rate`` (its own random stream,
    so the rows drawn do not depend on the rate)."""
    if rate >= 1.0:
        return table
    keep = (table["label"].to_numpy() == 1) | (rng.random(table.num_rows) < rate)
    return table.filter(pa.array(keep))


def _generator_of(params_path: Path) -> str | None:
    try:
        return json.loads(params_path.read_text()).get("generator")
    except (OSError, ValueError, AttributeError):
        return None


def feature_spec(cfg: GeneratorConfig, prices: np.ndarray | None = None) -> FeatureSpec:
    """The log's FeatureSpec: the reference schema, hash buckets ~2x each id space, the generator's
    ``max_history``, the train split's ``negative_rate``; with ``feature_strength``, ``price``
    (bucketised at the deciles of ``prices``, the calibration sample's) and
    ``tags`` (mean-pooled); with ``brand_strength``, the sequence group ``brand`` (``brand_id`` and
    its history ``hist_brand_id``) beside ``history`` (item and category)."""
    extra = {}
    if cfg.feature_strength:
        from rocket_ctr.features.fit import quantile_boundaries

        # bucketised only: the price is heavy-tailed and its signal saturates (a normalised raw price would not fit it)
        extra = {"numeric_features": [{"name": "price", "boundaries": quantile_boundaries(prices, 10),
                                       "default": float(np.median(prices))}],
                 "multi_hot_features": [{"name": "tags", "buckets": 4 * N_TAGS, "max_len": MAX_TAGS}]}
    if cfg.brand_strength:
        from rocket_ctr.features.id_feature import IdFeature
        from rocket_ctr.features.types import SequenceGroup

        sequence = FeatureSpec().sequence_features
        extra["sequence_features"] = sequence + (IdFeature("brand_id", history="hist_brand_id", buckets=16),)
        extra["sequence_groups"] = (SequenceGroup("history", tuple(f.name for f in sequence)),
                                    SequenceGroup("brand", ("brand_id",)))
    buckets = {"brand_id": max(2 * cfg.n_brands, 16)} if cfg.brand_strength else {}
    return FeatureSpec(max_history=cfg.max_history, negative_rate=cfg.negative_rate, **extra).with_buckets(
        item_id=max(2 * cfg.n_items, 16), cate_id=max(2 * cfg.n_cates, 16),
        user_gender=16, user_occupation=4 * len(OCCUPATIONS), **buckets)
