"""c1-c4 streamed over batches of activations, never holding all samples' ``[N, C]``.

Each measure is a function of sufficient statistics that add up over samples, gathered in
a few passes over the batches (:class:`Batch`; ``batches()`` starts a fresh pass):

- pass 1 (scan): the labels (O(N) integers), each neuron's maximum (dead neurons), the sums
  of the pre-activations and of their squares (c4's standardisation), and the first digit
  of c4's exact percentiles;
- pass 2: per-group sums and sums of squares (c1, c3; moments about a common shift, the
  first batch's mean, for accuracy), the sum of each subclass's unit rows ``M_b`` (c2),
  the percentiles' next digit;
- pass 3: each sample's silhouette from ``M_b`` (c2), the percentiles' last digit (float32);
- then c4's per-class Gram sums ``U_c^T U_c`` of the thresholded unit rows, as many
  classes per pass as ``gram_memory`` bytes hold.

Percentiles are exact: radix selection on the floats' order-preserving bit keys, 11 bits a
pass (3 passes for float32, 6 for float64). Memory: O(groups x neurons + neurons x 2048)
for the sums and histograms, plus ``classes x sum_l d_l^2`` floats for c4's Grams in a
pass, plus the labels. The results equal the in-memory functions of :mod:`.intraclass`
(which share the formulas below) up to floating-point summation order.

Across processes, each streams its own share and a :class:`~.distributed.Distributed`
reducer adds the statistics up; samples are numbered by rank, then by position.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from clusterprior.errors import UserError
from clusterprior.measures.arrays import (
    EPS,
    Groups,
    Subgroups,
    groups,
    mean,
    moments,
    percentile_ranks,
    subgroups,
    unit_rows,
    warn_dead,
)
from clusterprior.measures.distributed import Local
from clusterprior.measures.intraclass import (
    LayerScores,
    NeuronScores,
    Scores,
    Sums,
    median,
    selectivity_from_sums,
    silhouette_terms,
    std_from_sums,
    subclass_unit_sums,
    subset_of,
    threshold_percent,
    variance_ratio_from_sums,
)

STREAMED = ("c1", "c2", "c3", "c4")
GRAM_MEMORY = 2**30  # bytes of c4's per-class Gram matrices held in one pass
DIGIT_BITS = 11


@dataclass
class Batch:
    """One batch of a stream: per layer ``[b, C_l]`` pre-activations (and post-activations,
    which only c2 reads), the labels ``y`` and the subclass labels ``sub`` (or None)."""

    pre: list[torch.Tensor]
    post: list[torch.Tensor] | None
    y: torch.Tensor
    sub: torch.Tensor | None = None


Batches = Callable[[], Iterable[Batch]]
Progress = Callable[[str], None]


def _labels(t: torch.Tensor, what: str, b: int) -> torch.Tensor:
    if t.ndim != 1 or t.is_floating_point() or len(t) != b:
        raise UserError(f"{what} of a batch must be {b} integer labels, got {t.dtype} of shape {list(t.shape)}")
    return t.to(torch.int64)


# ---- pass 1: what every measure needs ----------------------------------------------------------------


@dataclass
class Scan:
    """Pass 1: the labels of every sample, the layers' sizes, each neuron's maximum, and the
    moments of the pre-activations about a shift (the first batch's mean)."""

    names: list[str]
    needs_post: bool
    reducer: Local
    y_parts: list[torch.Tensor] = field(default_factory=list)
    sub_parts: list[torch.Tensor] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    pre_max: list[torch.Tensor] = field(default_factory=list)
    post_max: list[torch.Tensor] = field(default_factory=list)
    shift: list[torch.Tensor] = field(default_factory=list)
    s1: list[torch.Tensor] = field(default_factory=list)
    s2: list[torch.Tensor] = field(default_factory=list)
    dtypes: list[torch.dtype] = field(default_factory=list)

    def update(self, batch: Batch) -> None:
        b = self._check(batch)
        self.y_parts.append(_labels(batch.y, "y", b).cpu())
        if batch.sub is not None:
            self.sub_parts.append(_labels(batch.sub, "sub", b).cpu())
        first = not self.sizes
        for i, pre in enumerate(batch.pre):
            z = pre.to(torch.float64)
            if first:
                self.sizes.append(pre.shape[1])
                self.dtypes.append(pre.dtype)
                self.shift.append(z.mean(0))
                self.pre_max.append(pre.amax(0).to(torch.float64))
                self.s1.append(torch.zeros_like(self.shift[i]))
                self.s2.append(torch.zeros_like(self.shift[i]))
            else:
                self.pre_max[i] = torch.maximum(self.pre_max[i], pre.amax(0).to(torch.float64))
            z = z - self.shift[i]
            self.s1[i] += z.sum(0)
            self.s2[i] += (z * z).sum(0)
        if self.needs_post:
            assert batch.post is not None  # _check
            peaks = [post.amax(0).to(torch.float64) for post in batch.post]
            self.post_max = peaks if first else [torch.maximum(a, b) for a, b in zip(self.post_max, peaks, strict=True)]

    def _check(self, batch: Batch) -> int:
        """The batch's size, after checking its layers against the names and the first batch."""
        b = len(batch.y)
        arrays = [("pre", batch.pre)] + ([("post", batch.post or [])] if self.needs_post else [])
        for which, layers in arrays:
            if len(layers) != len(self.names):
                raise UserError(f"a batch has {len(layers)} {which} layers, expected {len(self.names)}")
            for i, (name, t) in enumerate(zip(self.names, layers, strict=True)):
                width = self.sizes[i] if self.sizes else t.shape[-1]
                if t.ndim != 2 or t.shape != (b, width):
                    raise UserError(f"layer {name!r}: expected a [{b}, {width}] batch, got shape {list(t.shape)}")
                if not bool(torch.isfinite(t.sum())) and not bool(torch.isfinite(t).all()):
                    raise UserError(f"layer {name!r} holds NaN or infinite activations")
                if self.sizes and which == "pre" and torch.finfo(t.dtype).bits > torch.finfo(self.dtypes[i]).bits:
                    raise UserError(f"layer {name!r}: a batch of {t.dtype} after batches of {self.dtypes[i]}")
        if self.sub_parts and batch.sub is None or (self.y_parts and not self.sub_parts and batch.sub is not None):
            raise UserError("some batches have subclass labels and others do not")
        return b

    def finish(self) -> None:
        """Everything reduced over processes; the labels of all samples in global order."""
        if not self.y_parts:
            raise UserError("the data has no samples")
        r = self.reducer
        self.pre_max = [r.max(t) for t in self.pre_max]
        self.post_max = [r.max(t) for t in self.post_max]
        local_n = sum(len(t) for t in self.y_parts)
        sizes = r.gather(torch.tensor([local_n]))
        self.n = int(sum(int(t[0]) for t in sizes))
        self.offset = int(sum(int(t[0]) for t in sizes[: r.rank]))
        common = [r.sum(c) / r.world for c in self.shift]  # one shift for every process's sums
        for i, c in enumerate(common):
            d = self.shift[i] - c
            self.s2[i] = r.sum(self.s2[i] + 2 * d * self.s1[i] + local_n * d * d)
            self.s1[i] = r.sum(self.s1[i] + local_n * d)
        self.shift = common
        self.local_y = torch.cat(self.y_parts)
        self.y = torch.cat(r.gather(self.local_y))
        self.sub = torch.cat(r.gather(torch.cat(self.sub_parts))) if self.sub_parts else None

    def groups(self, with_subclasses: bool) -> Groups:
        if not with_subclasses:
            return groups(self.y, self.n, torch.device("cpu"))
        if self.sub is None:
            raise UserError("c1 and c2 need subclass labels and the batches have none")
        return subgroups(self.y, self.n, torch.device("cpu"), self.sub)

    def live(self, i: int) -> torch.Tensor:
        """Layer ``i``'s neurons with a positive pre-activation on some sample."""
        return self.pre_max[i] > 0

    def moments(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer ``i``'s per-neuron mean and population std over all samples."""
        m1 = self.s1[i] / self.n
        return self.shift[i] + m1, (self.s2[i] / self.n - m1 * m1).clamp_min(0.0).sqrt()


class Part:
    """A measure's share of the passes: ``update`` each batch of passes ``first`` to ``last``
    (0-based; ``last`` may grow when the scan is done), ``finish`` at the end of each of them,
    then ``scores``."""

    first = 1
    last = 1

    def wants(self, p: int) -> bool:
        return self.first <= p <= self.last

    def start(self) -> None:
        """Called once the scan (pass 1) is done."""

    def scores(self) -> Scores:
        raise NotImplementedError

    def update(self, p: int, batch: Batch, index: slice) -> None:
        raise NotImplementedError

    def finish(self, p: int) -> None:
        raise NotImplementedError


# ---- c1 and c3: per-group moments (pass 2) -------------------------------------------------------


class GroupMoments(Part):
    """Per-subclass (c1) or per-class (c3) sums of the shifted pre-activations and their squares."""

    def __init__(self, scan: Scan, measure: str) -> None:
        self.scan, self.measure, self.with_subclasses = scan, measure, measure == "c1"
        self.sums: list[Sums] = []

    def update(self, p: int, batch: Batch, index: slice) -> None:
        g = self.g
        group = (g.sub_index if isinstance(g, Subgroups) and self.with_subclasses else g.class_index)[index]
        n_groups = g.n_subclasses if isinstance(g, Subgroups) and self.with_subclasses else g.n_classes
        for i, pre in enumerate(batch.pre):
            z = pre.to(torch.float64) - self.scan.shift[i]
            group = group.to(z.device)
            if len(self.sums) <= i:
                zeros = torch.zeros(n_groups, z.shape[1], dtype=z.dtype, device=z.device)
                self.sums.append((torch.zeros(n_groups, dtype=z.dtype, device=z.device), zeros, zeros.clone()))
            counts, s1, s2 = self.sums[i]
            counts.index_add_(0, group, torch.ones(len(z), dtype=z.dtype, device=z.device))
            s1.index_add_(0, group, z)
            s2.index_add_(0, group, z * z)

    def start(self) -> None:
        self.g = self.scan.groups(self.with_subclasses)

    def finish(self, p: int) -> None:
        r = self.scan.reducer
        self.sums = [(r.sum(c), r.sum(s1), r.sum(s2)) for c, s1, s2 in self.sums]

    def totals(self) -> tuple[Sums, Sums | None]:
        """All layers' neurons concatenated: the class sums, and the subclass sums (or None)."""
        parts = tuple(torch.cat([s[j] for s in self.sums], dim=1 if j else 0) for j in range(3))
        counts = self.sums[0][0]
        if not (isinstance(self.g, Subgroups) and self.with_subclasses):
            return (counts, parts[1], parts[2]), None
        g = self.g
        owner = g.owner.to(counts.device)
        by_class = tuple(
            torch.zeros(g.n_classes, *t.shape[1:], dtype=t.dtype, device=t.device).index_add_(0, owner, t)
            for t in (counts, parts[1], parts[2])
        )
        return (by_class[0], by_class[1], by_class[2]), (counts, parts[1], parts[2])

    def live(self) -> torch.Tensor:
        return torch.cat([self.scan.live(i) for i in range(len(self.scan.sizes))])

    def scores(self) -> NeuronScores:
        """c1's or c3's scores from the group sums."""
        class_sums, sub_sums = self.totals()
        live = self.live().to(class_sums[1].device)
        names: list[str | int] = list(self.scan.names)
        if self.measure == "c1":
            g = self.g
            assert isinstance(g, Subgroups) and sub_sums is not None
            sel = selectivity_from_sums(sub_sums, class_sums, live, g)[g.valid.to(live.device)]
            return NeuronScores(sel, self.scan.sizes, live, names, median)
        _, sd_all = moments(*(t.sum(0, keepdim=True) for t in class_sums))  # the whole set's sums: the classes' total
        ratio = variance_ratio_from_sums(class_sums, sd_all, live)
        return NeuronScores(ratio, self.scan.sizes, live, names, mean)


# ---- c2: subclass silhouettes (passes 2 and 3) -----------------------------------------------------


class Silhouettes(Part):
    """Pass 2: each subclass's sum of unit rows ``M_b`` per layer; pass 3: each sample's
    silhouette from them, summed per subclass."""

    last = 2

    def __init__(self, scan: Scan) -> None:
        self.scan = scan
        self.unit_sums: dict[int, torch.Tensor] = {}
        self.totals: dict[int, torch.Tensor] = {}

    def start(self) -> None:
        g = self.scan.groups(True)
        assert isinstance(g, Subgroups)
        self.g = g
        self.counts = torch.bincount(g.sub_index, minlength=g.n_subclasses).to(torch.float64)
        live = [bool((peak > 0).any()) for peak in self.scan.post_max]
        dead = [name for name, alive in zip(self.scan.names, live, strict=True) if not alive]
        warn_dead(dead)
        self.layers = [i for i, alive in enumerate(live) if alive]

    def update(self, p: int, batch: Batch, index: slice) -> None:
        assert batch.post is not None
        g = self.g
        for i in self.layers:
            u, zero = unit_rows(batch.post[i].to(torch.float64))
            own = g.sub_index[index].to(u.device)
            if p == 1:
                part = subclass_unit_sums(u, g, own)
                self.unit_sums[i] = self.unit_sums[i] + part if i in self.unit_sums else part
                continue
            counts = self.counts.to(u.device)
            s = silhouette_terms(u, zero, own, g.class_index[index].to(u.device), counts, self.unit_sums[i], _on(g, u))
            part = torch.zeros(g.n_subclasses, dtype=u.dtype, device=u.device).index_add_(0, own, s)
            self.totals[i] = self.totals[i] + part if i in self.totals else part

    def finish(self, p: int) -> None:
        target = self.unit_sums if p == 1 else self.totals
        for i in target:
            target[i] = self.scan.reducer.sum(target[i])

    def scores(self) -> LayerScores:
        out: dict[str | int, torch.Tensor] = {}
        for i in self.layers:
            device = self.totals[i].device
            out[self.scan.names[i]] = (self.totals[i] / self.counts.to(device))[self.g.valid.to(device)]
        return LayerScores(out, median)


def _on(g: Subgroups, like: torch.Tensor) -> Subgroups:
    """``g`` with the subclasses' owners on ``like``'s device (what :func:`silhouette_terms` reads)."""
    if g.owner.device == like.device:
        return g
    return Subgroups(g.class_ids, g.class_index, g.sub_ids, g.sub_index, g.owner.to(like.device), g.valid)


# ---- c4: exact percentiles by radix selection, then per-class Gram sums -------------------------------


def _digits(bits: int) -> list[tuple[int, int]]:
    """``(shift, width)`` of each radix digit, most significant first."""
    widths, left = [], bits
    while left > 0:
        widths.append(min(DIGIT_BITS, left))
        left -= widths[-1]
    shifts = [bits - sum(widths[: i + 1]) for i in range(len(widths))]
    return list(zip(shifts, widths, strict=True))


def float_keys(v: torch.Tensor, bits: int) -> torch.Tensor:
    """Integer keys in the order of the floats ``v`` (float32 for ``bits`` 32, else float64):
    the bit pattern with the sign bit flipped for positives and every bit flipped for
    negatives, read as unsigned (held as the two's-complement pattern of an int32 or int64:
    digits are read with shifts and masks, never by comparing keys)."""
    ints = torch.int32 if bits == 32 else torch.int64
    i = v.to(torch.float32 if bits == 32 else torch.float64).contiguous().view(ints)
    return torch.where(i < 0, ~i, i ^ torch.iinfo(ints).min)


def key_floats(k: torch.Tensor, bits: int) -> torch.Tensor:
    """The float64 values of keys given as unsigned values in int64 (for 32 bits) or as
    :func:`float_keys`' pattern (for 64 bits)."""
    if bits == 32:
        i = torch.where(k >= 2**31, k - 2**31, ~k)
        return i.to(torch.int32).view(torch.float32).to(torch.float64)
    i = torch.where(k < 0, k ^ torch.iinfo(torch.int64).min, ~k)
    return i.view(torch.float64)


class OrderStatistics:
    """The exact order statistics ``lo`` and ``lo + 1`` (0-based ranks, the second clipped to
    n - 1) of every column of a stream of ``[b, d]`` batches, one radix digit per pass.

    Each pass counts, per column, the digit values of the keys that share the ``lo``
    statistic's prefix so far, which fixes its next digit. The ``lo + 1`` statistic follows in
    the same bucket until it falls in a later one; then it is that bucket's minimum, read in
    the next pass (or known from the key when the digits are complete)."""

    def __init__(self, d: int, bits: int, reducer: Local) -> None:
        self.bits, self.reducer, self.digits = bits, reducer, _digits(bits)
        self.d = d
        self.counts = torch.zeros(0)
        self.prefix = torch.zeros(d, dtype=torch.int64)
        self.same = torch.ones(d, dtype=torch.bool)  # lo + 1 is in lo's bucket so far
        self.pending = torch.zeros(d, dtype=torch.bool)  # lo + 1 is the minimum of the bucket in hi_prefix
        self.hi_prefix = torch.zeros(d, dtype=torch.int64)
        self.hi = torch.full((d,), float("nan"), dtype=torch.float64)

    @property
    def passes(self) -> int:
        return len(self.digits)

    def set_ranks(self, lo: int, hi: int) -> None:
        self.r = torch.full((self.d,), lo, dtype=torch.int64)
        self.step = hi - lo

    def _match(self, keys: torch.Tensor, p: int, prefix: torch.Tensor) -> torch.Tensor:
        shift, width = self.digits[p]
        above = shift + width
        return ((keys >> above) & ((1 << (self.bits - above)) - 1)) == prefix

    def update(self, p: int, values: torch.Tensor) -> None:
        shift, width = self.digits[p]
        keys = float_keys(values, self.bits)
        if self.counts.numel() == 0:
            self.counts = torch.zeros(self.d << width, dtype=torch.int64, device=values.device)
            self.hmin = torch.full((self.d,), float("inf"), dtype=torch.float64, device=values.device)
        flat = (keys >> shift) & ((1 << width) - 1)
        if (self.d << width) >= 2**31:  # column offsets beyond int32
            flat = flat.to(torch.int64)
        flat += torch.arange(self.d, device=values.device, dtype=flat.dtype) << width
        if p > 0:
            flat = flat[self._match(keys, p, self.prefix.to(values.device, keys.dtype))]
        self.counts += torch.bincount(flat.flatten(), minlength=self.d << width)
        if bool(self.pending.any()):
            inside = self._match(keys, p, self.hi_prefix.to(values.device, keys.dtype)) & self.pending.to(values.device)
            found = torch.where(inside, values.to(torch.float64), float("inf")).amin(0)
            self.hmin = torch.minimum(self.hmin, found)

    def finish(self, p: int) -> None:
        _, width = self.digits[p]
        counts = self.reducer.sum(self.counts).view(self.d, 1 << width).cpu()
        if bool(self.pending.any()):
            self.hi = torch.where(self.pending, self.reducer.min(self.hmin).cpu(), self.hi)
            self.pending[:] = False
        cum = counts.cumsum(1)
        digit = (cum <= self.r[:, None]).sum(1)
        hi_digit = (cum <= (self.r + self.step)[:, None]).sum(1)
        before = torch.where(digit > 0, cum.gather(1, (digit - 1).clamp_min(0)[:, None]).squeeze(1), 0)
        split = self.same & (hi_digit != digit)
        self.hi_prefix = torch.where(split, (self.prefix << width) | hi_digit, self.hi_prefix)
        self.prefix = (self.prefix << width) | digit
        self.r = self.r - before
        self.same &= ~split
        if p == self.passes - 1:
            self.hi = torch.where(split, key_floats(self.hi_prefix, self.bits), self.hi)
        else:
            self.pending = split
        self.counts = torch.zeros(0)

    def values(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(lo, lo + 1)`` statistics per column, float64, after the last pass."""
        lo = key_floats(self.prefix, self.bits)
        return lo, torch.where(self.same, lo, self.hi)


@dataclass
class GramSums:
    """What :func:`~.intraclass.std_from_sums` needs of a set of unit rows: their count, sum,
    Gram matrix ``U^T U`` and number of zero rows. Sums of disjoint sets add up."""

    n: torch.Tensor
    total: torch.Tensor
    gram: torch.Tensor
    zeros: torch.Tensor

    @classmethod
    def empty(cls, d: int, device: torch.device) -> GramSums:
        def zeros(*shape: int) -> torch.Tensor:
            return torch.zeros(shape, dtype=torch.float64, device=device)

        return cls(zeros(), zeros(d), zeros(d, d), zeros())

    def add(self, u: torch.Tensor, zero: torch.Tensor) -> GramSums:
        """Add the rows ``u`` in place (the Gram matrix by one fused ``addmm_``)."""
        self.n += len(u)
        self.total += u.sum(0)
        self.gram.addmm_(u.T, u)
        self.zeros += zero.sum()
        return self

    def __add__(self, other: GramSums) -> GramSums:
        return GramSums(self.n + other.n, self.total + other.total, self.gram + other.gram, self.zeros + other.zeros)

    def reduced(self, reducer: Local) -> GramSums:
        return GramSums(*(reducer.sum(t) for t in (self.n, self.total, self.gram, self.zeros)))

    def to_cpu(self) -> GramSums:
        return GramSums(*(t.cpu() for t in (self.n, self.total, self.gram, self.zeros)))

    def std(self) -> float:
        return std_from_sums(int(self.n), self.total, self.gram, int(self.zeros))


class Spreads(Part):
    """c4: each live layer's exact percentile thresholds (passes 1 to 3 for float32), then the
    per-class (and whole-set or subset) Gram sums of the thresholded unit rows, a chunk of
    classes per pass."""

    def __init__(self, scan: Scan, max_samples: int | None, seed: int, gram_memory: int) -> None:
        self.scan, self.max_samples, self.seed, self.gram_memory = scan, max_samples, seed, gram_memory
        self.select: list[OrderStatistics] = []
        self.chunks: list[list[int]] | None = None  # known after the scan

    first = 0

    @property
    def select_passes(self) -> int:
        return max(s.passes for s in self.select)

    @property
    def last(self) -> int:  # type: ignore[override]
        return 0 if self.chunks is None else self.select_passes + len(self.chunks) - 1

    def update(self, p: int, batch: Batch, index: slice) -> None:
        if not self.select:
            self.select = [
                OrderStatistics(t.shape[1], 32 if torch.finfo(t.dtype).bits <= 32 else 64, self.scan.reducer)
                for t in batch.pre
            ]
        if p < self.select_passes:
            for s, pre in zip(self.select, batch.pre, strict=True):
                if p < s.passes:
                    s.update(p, pre)
        else:
            self._grams(p - self.select_passes, batch, index)

    def finish(self, p: int) -> None:
        if p >= self.select_passes:
            self._end_chunk(p - self.select_passes)
            return
        for s in self.select:
            if p < s.passes:
                s.finish(p)
        if p == self.select_passes - 1:
            self._thresholds()

    def start(self) -> None:
        """After the scan: the classes, the live layers, their percentile ranks, the class chunks."""
        scan = self.scan
        self.g = scan.groups(False)
        self.layers = [i for i in range(len(scan.sizes)) if bool(scan.live(i).any())]
        dead = [scan.names[i] for i in range(len(scan.sizes)) if i not in self.layers]
        warn_dead(dead)
        for i, s in enumerate(self.select):
            n_live = int(scan.live(i).sum())
            lo, hi, _ = percentile_ranks(threshold_percent(n_live), scan.n) if n_live else (0, 0, 0.0)
            s.set_ranks(lo, hi)
        per_class = 8 * sum(int(scan.live(i).sum()) ** 2 for i in self.layers)
        size = max(1, self.gram_memory // max(per_class, 1))
        self.chunks = [list(range(c, min(c + size, self.g.n_classes))) for c in range(0, self.g.n_classes, size)]
        subset = subset_of(scan.n, self.max_samples, self.seed)
        self.in_subset = None if subset is None else torch.zeros(scan.n, dtype=torch.bool).index_fill_(0, subset, True)
        self.per_class = {i: torch.zeros(self.g.n_classes, dtype=torch.float64) for i in self.layers}
        self.whole: dict[int, GramSums] = {}
        self.sums: dict[tuple[int, int], GramSums] = {}

    def _thresholds(self) -> None:
        """Each live neuron's threshold on the standardised scale: the percentile's order
        statistics standardised, then interpolated (what :func:`threshold_neurons` computes)."""
        self.standard: dict[int, tuple[torch.Tensor, ...]] = {}
        for i in self.layers:
            live = self.scan.live(i)
            mean, std = (t[live] for t in self.scan.moments(i))
            lo_v, hi_v = (t[live] for t in self.select[i].values())
            _, _, frac = percentile_ranks(threshold_percent(int(live.sum())), self.scan.n)
            a, b = (lo_v - mean) / (std + EPS), (hi_v - mean) / (std + EPS)
            self.standard[i] = (live.nonzero().flatten(), mean, std, a + frac * (b - a))

    def _grams(self, chunk: int, batch: Batch, index: slice) -> None:
        assert self.chunks is not None
        class_index = self.g.class_index[index]
        order = torch.argsort(class_index, stable=True)  # the batch's rows grouped by class: classes are slices
        bounds = torch.bincount(class_index, minlength=self.g.n_classes).cumsum(0).tolist()
        subset = self.in_subset[index] if self.in_subset is not None and chunk == 0 else None
        for i in self.layers:
            columns, mean, std, threshold = (t.to(batch.pre[i].device) for t in self.standard[i])
            z = (batch.pre[i][order.to(columns.device)][:, columns].to(torch.float64) - mean) / (std + EPS)
            u, zero = unit_rows((z - threshold).clamp_min(0.0))
            for c in self.chunks[chunk]:
                start, stop = bounds[c - 1] if c else 0, bounds[c]
                if stop > start:
                    self._sums(self.sums, (i, c), u).add(u[start:stop], zero[start:stop])
            if subset is not None and bool(subset.any()):
                rows = subset[order].to(u.device)
                self._sums(self.whole, i, u).add(u[rows], zero[rows])

    def _sums(self, store: dict, key: object, like: torch.Tensor) -> GramSums:
        """``store[key]``, created empty on first use."""
        if key not in store:
            store[key] = GramSums.empty(like.shape[1], like.device)
        return store[key]

    def _end_chunk(self, chunk: int) -> None:
        """Each class of the chunk's spread; the whole set's sums are the classes' sums added up."""
        assert self.chunks is not None
        for i in self.layers:
            d = len(self.standard[i][0])
            for c in self.chunks[chunk]:
                sums = (self.sums.get((i, c)) or GramSums.empty(d, torch.device("cpu"))).reduced(self.scan.reducer)
                self.per_class[i][c] = sums.std()
                if self.in_subset is None:
                    self.whole[i] = self.whole[i] + sums.to_cpu() if i in self.whole else sums.to_cpu()
        self.sums = {}

    def scores(self) -> LayerScores:
        out: dict[str | int, torch.Tensor] = {}
        for i in self.layers:
            whole = self.whole.get(i) or GramSums.empty(len(self.standard[i][0]), torch.device("cpu"))
            if self.in_subset is not None:
                whole = whole.reduced(self.scan.reducer)
            out[self.scan.names[i]] = self.per_class[i] / (whole.std() + EPS)
        return LayerScores(out, mean)


# ---- the passes ------------------------------------------------------------------------------------


def _one_pass(
    batches: Batches, p: int, scan: Scan, progress: Progress | None, label: str
) -> Iterator[tuple[Batch, slice]]:
    """The batches of pass ``p`` with their slice of the global sample numbering; from the
    second pass on, checks that the stream gives the same samples in the same order."""
    start = scan.offset if p else 0
    seen = 0
    for batch in batches():
        b = len(batch.y)
        if p:
            expected = scan.local_y[seen : seen + b]
            if len(expected) != b or not torch.equal(expected, batch.y.cpu().to(torch.int64)):
                raise UserError(
                    f"the data gave other samples in pass {p + 1} than in pass 1; streaming needs the same "
                    "order every pass (a DataLoader with shuffle=False)"
                )
        yield batch, slice(start + seen, start + seen + b)
        seen += b
        if progress is not None:
            progress(label)
    if p and seen != len(scan.local_y):
        raise UserError(f"the data gave {seen} samples in pass {p + 1} and {len(scan.local_y)} in pass 1")


def stream_scores(
    batches: Batches,
    names: Sequence[str],
    measures: Sequence[str],
    max_samples: int | None = None,
    seed: int = 0,
    reducer: Local | None = None,
    gram_memory: int = GRAM_MEMORY,
    progress: Progress | None = None,
) -> dict[str, Scores]:
    """The scores of ``measures`` (a subset of c1-c4) over the layers ``names``, streamed over
    ``batches()`` (each call starts a pass; every pass must give the same samples in the same
    order), as many passes as the measures need (see the module docstring). ``max_samples``
    and ``seed``: c4's subset for the whole set's spread. ``progress(label)`` is called after
    each batch, ``label`` like "pass 2 of 4"."""
    unknown = [m for m in measures if m not in STREAMED]
    if unknown:
        raise UserError(f"{unknown[0]} cannot be streamed; the streamed measures are {', '.join(STREAMED)}")
    scan = Scan(list(names), "c2" in measures, reducer or Local())
    parts: dict[str, Part] = {}
    parts.update({m: GroupMoments(scan, m) for m in ("c1", "c3") if m in measures})
    if "c2" in measures:
        parts["c2"] = Silhouettes(scan)
    if "c4" in measures:
        parts["c4"] = Spreads(scan, max_samples, seed, gram_memory)
    p = 0
    while p == 0 or any(part.wants(p) for part in parts.values()):
        active = [part for part in parts.values() if part.wants(p)]
        label = f"pass {p + 1} of {max(part.last for part in parts.values()) + 1 if p else '?'}"
        for batch, index in _one_pass(batches, p, scan, progress, label):
            if p == 0:
                scan.update(batch)
            for part in active:
                part.update(p, batch, index)
        if p == 0:
            scan.finish()
            for part in parts.values():
                part.start()
        for part in active:
            part.finish(p)
        p += 1
    return {m: parts[m].scores() for m in measures}
