r"""``cs``: Walsh–Hadamard compressed sensing, DDRM's ``cs_walshhadamard``, with its trivial SVD.

Each channel :math:`x \in \mathbb{R}^n` (:math:`n = HW`, the image read row by row) is permuted
by a seeded permutation :math:`\pi`, transformed by the orthonormal Walsh–Hadamard matrix
:math:`\mathcal{H}_n/\sqrt n` (Sylvester's natural order, :math:`\mathcal{H}_1 = 1`,
:math:`\mathcal{H}_{2m} = \left(\begin{smallmatrix}\mathcal{H}_m & \mathcal{H}_m \\
\mathcal{H}_m & -\mathcal{H}_m\end{smallmatrix}\right)`),
and the first :math:`m = \lceil n / \text{ratio} \rceil` coefficients are kept:

.. math::

    y = S\, \tfrac{1}{\sqrt n}\mathcal{H}_n P_\pi\, x, \qquad (P_\pi x)_j = x_{\pi(j)},
    \qquad S = [\,I_m \;\; 0\,].

The rows of :math:`\mathcal{H}_n P_\pi/\sqrt n` are orthonormal, so the SVD is immediate:
:math:`V = (\mathcal{H}_n P_\pi / \sqrt n)^\top`, :math:`U = I_m`, :math:`\Sigma = 1` on the
:math:`m` kept coefficients and 0 on the others (DDRM, appendix D). ``H† = Hᵀ``.

**Fast transform.** :math:`\mathcal{H}_n = \mathcal{H}_{f_1} \otimes \cdots \otimes \mathcal{H}_{f_k}`
for any split :math:`n = f_1 \cdots f_k` into powers of two; :func:`fwht` applies one small
factor (:math:`f \le 16`) per pass, as a batched matrix product along one axis of the reshaped
vector, so the cost is :math:`\Theta(n \log n)` (:math:`\lceil \log_{16} n\rceil` passes of
:math:`\le 16` multiply–adds per entry) and no :math:`n \times n` matrix ever exists. ``H``
itself needs less: the first :math:`m' = 2^{\lceil \log_2 m\rceil}` rows of :math:`\mathcal{H}_n`
are :math:`[\mathcal{H}_{m'} \cdots \mathcal{H}_{m'}]` (:math:`n/m'` copies), so
:math:`Hx` sums the :math:`n/m'` blocks of :math:`P_\pi x` and transforms one block; ``Hᵀ``
transforms one block and tiles it.

**Sizes.** The transform needs :math:`n = HW` to be a power of two, i.e. both sides powers of
two; other sizes are refused with an error naming the nearest sides that work.

**Spectral layout.** ``Vt(x)`` is ``(C, n)``: the permuted transform of each channel, the
measured coefficients first. The measurement ``y`` is ``(B, C, m)``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import attrs
import torch
from hypothesis import strategies as st
from torch import Tensor

import opkit
from opkit.params import in_range

__all__ = ["CSParams", "CompressedSensing", "fwht", "hadamard"]

_SEED_MAX = 2**63 - 1
#: Largest Hadamard factor applied in one pass of :func:`fwht`.
_FACTOR = 16


def hadamard(n: int, *, dtype: torch.dtype = torch.float64, device: Any = None) -> Tensor:
    r"""The Sylvester Hadamard matrix :math:`\mathcal{H}_n` (entries ±1, natural order), a dense matrix.

    :math:`(\mathcal{H}_n)_{ij} = (-1)^{\mathrm{popcount}(i \,\&\, j)}`. Used as the small factor of
    :func:`fwht` and as the explicit oracle in tests; never built at the image's size.

    Parameters
    ----------
    n : int
        A power of two.
    dtype : torch.dtype
        Floating dtype.
    device : torch.device, optional
        Device.

    Returns
    -------
    torch.Tensor
        ``(n, n)``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or n & (n - 1):
        raise ValueError(f"n must be a power of two, got {n!r}")
    i = torch.arange(n, device=device)
    bits = i[:, None] & i[None, :]
    parity = torch.zeros_like(bits)
    while bool(bits.any()):
        parity ^= bits & 1
        bits = bits >> 1
    return (1 - 2 * parity).to(dtype)


def fwht(x: Tensor) -> Tensor:
    r"""Orthonormal fast Walsh–Hadamard transform along the last axis: :math:`\mathcal{H}_n x / \sqrt n`.

    The axis of length :math:`n = 2^L` is split into factors of at most 16; each pass multiplies
    the least significant remaining factor by :math:`\mathcal{H}_f` and moves it to the front
    (a batched matrix product with a transposed operand), so after all passes the axes are back
    in order. :math:`\Theta(n \log n)` work, :math:`\Theta(n)` memory. The transform is symmetric
    and orthogonal, hence its own inverse.

    Parameters
    ----------
    x : torch.Tensor
        ``(..., n)`` floating, ``n`` a power of two.

    Returns
    -------
    torch.Tensor
        ``(..., n)``, a new tensor.

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([1.0, 0.0, 0.0, 0.0])
    >>> fwht(x)
    tensor([0.5000, 0.5000, 0.5000, 0.5000])
    >>> torch.allclose(fwht(fwht(x)), x)
    True
    """
    n = x.shape[-1]
    if n < 1 or n & (n - 1):
        raise ValueError(f"the Walsh–Hadamard transform needs a power-of-two length, got {n}")
    bits = n.bit_length() - 1
    lead = x.shape[:-1]
    out = x.reshape(-1, n)
    rows = out.shape[0]
    if bits == 0:
        return x.clone()
    # ⌈L / 4⌉ factors of nearly equal size, each at most 16 (2^4)
    passes = -(-bits // (_FACTOR.bit_length() - 1))
    factors = [1 << (bits // passes + (j < bits % passes)) for j in range(passes)]
    for f in factors:  # each factor scaled by 1/√f: their product is 𝓗_n/√n
        hf = _scaled_hadamard(f, x.dtype, x.device)
        out = torch.matmul(hf, out.view(rows, n // f, f).mT).reshape(rows, n)
    return out.reshape(*lead, n)


@functools.lru_cache(maxsize=64)
def _scaled_hadamard(f: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    r""":math:`\mathcal{H}_f/\sqrt f` (a small constant, built once per size, dtype and device)."""
    return hadamard(f, dtype=torch.float64).div_(math.sqrt(f)).to(device=device, dtype=dtype)


def _nearest_powers(n: int) -> str:
    lo = 1 << (n.bit_length() - 1)
    return f"{lo} or {2 * lo}" if lo != n else str(n)


def _ratio(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    try:
        ok = not isinstance(value, bool) and 1.0 <= float(value) < math.inf
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{attribute.name} must be a finite number >= 1, got {value!r}")


@attrs.frozen
class CSParams:
    """Parameters of ``cs`` (frozen, validated).

    Attributes
    ----------
    ratio : float
        Compression ratio ``≥ 1``: ``⌈n / ratio⌉`` coefficients are kept per channel (default 4;
        DDRM's experiments use 2 and 4).
    seed : int
        Seed of the permutation (default 0).
    """

    ratio: float = attrs.field(default=4.0, validator=_ratio)
    seed: int = attrs.field(default=0, validator=in_range(0, _SEED_MAX, integer=True))


class CompressedSensing(opkit.SVDOperator):
    r"""Walsh–Hadamard compressed sensing: keep ``m = ⌈HW/ratio⌉`` permuted WHT coefficients per channel.

    See the module documentation. ``Vt`` is a gather by :math:`\pi` and one :func:`fwht`;
    ``V`` one :func:`fwht` and the inverse gather; ``U``/``Uᵀ`` select or zero-pad the first
    ``m`` coordinates; ``H``/``Hᵀ``/``H†`` work on one block of :math:`m' \ge m` coefficients.

    Parameters
    ----------
    shape : tuple of int
        ``(C, H, W)`` with ``H`` and ``W`` powers of two.
    ratio : float
        Compression ratio (default 4).
    seed : int
        Seed of the permutation (default 0), drawn with :func:`torch.randperm` from a
        :class:`torch.Generator`; the same for every channel.

    Raises
    ------
    ValueError
        For a bad parameter, or sides that are not powers of two (naming the nearest that work).

    Examples
    --------
    >>> import torch
    >>> op = CompressedSensing((3, 16, 8), ratio=4, seed=1)
    >>> op.out_shape
    (3, 32)
    >>> x = torch.rand(2, 3, 16, 8, dtype=torch.float64)
    >>> bool(torch.allclose(op(op.pinv(op(x))), op(x)))
    True
    """

    def __init__(self, shape: tuple[int, int, int], *, ratio: float = 4.0, seed: int = 0) -> None:
        super().__init__(shape)
        self.params = CSParams(ratio=ratio, seed=seed)
        _, h, w = self.shape
        if h & (h - 1) or w & (w - 1):
            raise ValueError(
                f"the height and width must be powers of two (the Walsh–Hadamard transform has length "
                f"H·W), got {h}×{w}; the nearest sizes that work: height {_nearest_powers(h)}, "
                f"width {_nearest_powers(w)}"
            )
        n = h * w
        self._n = n
        self._m = m = min(n, math.ceil(n / float(self.params.ratio)))
        self._block = 1 << (m - 1).bit_length()  # m' = the smallest power of two >= m
        g = torch.Generator().manual_seed(self.params.seed)
        self._perm = torch.randperm(n, generator=g)
        self._inv = torch.empty_like(self._perm)
        self._inv[self._perm] = torch.arange(n)  # the inverse permutation, in O(n)
        s = torch.zeros((1, n), dtype=torch.float64)
        s[:, :m] = 1.0
        self._s = s

    @property
    def out_shape(self) -> tuple[int, ...]:
        """``(C, m)``, ``m = ⌈HW / ratio⌉``."""
        return (self.shape[0], self._m)

    @property
    def kept(self) -> int:
        """``m``, the coefficients kept per channel."""
        return self._m

    @property
    def permutation(self) -> Tensor:
        """The permutation :math:`\\pi` (``Vt`` reads pixel ``π(j)`` into position ``j``), a copy."""
        return self._perm.clone()

    @property
    def singulars(self) -> Tensor:
        """Ones on the ``m`` measured coordinates, zeros elsewhere, ``(1, n)``."""
        return self._s

    def _permuted(self, x: Tensor) -> Tensor:
        # a gather along the last axis of a 2-D view: torch's index_select is an order of
        # magnitude slower on the same data seen as 3-D
        n = self._n
        z = x.reshape(-1, n).index_select(1, self.cast("perm", self._perm, x))
        return z.view(*x.shape[:-2], n)

    def _unpermuted(self, z: Tensor) -> Tensor:
        _, h, w = self.shape
        out = z.reshape(-1, self._n).index_select(1, self.cast("inv", self._inv, z))
        return out.view(*z.shape[:-1], h, w)

    def Vt(self, x: Tensor) -> Tensor:
        """``Vᵀ x = 𝓗 P_π x / √n`` per channel, ``(B, C, n)``."""
        return fwht(self._permuted(x))

    def V(self, v: Tensor) -> Tensor:
        """``V v = P_πᵀ 𝓗 v / √n``, the image ``(B, C, H, W)``."""
        return self._unpermuted(fwht(v))

    def Ut(self, y: Tensor) -> Tensor:
        """``Uᵀ y``: ``y`` followed by ``n − m`` zeros, ``(B, C, n)``."""
        return torch.nn.functional.pad(y, (0, self._n - self._m))

    def U(self, v: Tensor) -> Tensor:
        """``U v``: the first ``m`` coordinates (a copy), ``(B, C, m)``."""
        return v[..., : self._m].clone()

    def forward(self, x: Tensor) -> Tensor:
        """``H x``: the first ``m`` coefficients, from one block of ``m'`` (``P_π x``'s blocks summed)."""
        n, b = self._n, self._block
        z = self._permuted(x)
        blocks = z.view(*z.shape[:-1], n // b, b).sum(-2)
        return fwht(blocks)[..., : self._m].mul_(math.sqrt(b / n))

    def adjoint(self, y: Tensor) -> Tensor:
        """``Hᵀ y``: one block of ``m'`` transformed, tiled ``n/m'`` times, un-permuted."""
        self.check_measurement(y)
        n, b = self._n, self._block
        block = fwht(torch.nn.functional.pad(y, (0, b - self._m))).mul_(math.sqrt(b / n))
        z = block.unsqueeze(-2).expand(*block.shape[:-1], n // b, b).reshape(*block.shape[:-1], n)
        return self._unpermuted(z)

    def pinv(self, y: Tensor) -> Tensor:
        """``H† y = Hᵀ y`` (the rows of ``H`` are orthonormal)."""
        return self.adjoint(y)


def _factory(*, shape: tuple[int, int, int], ratio: float = 4.0, seed: int = 0) -> CompressedSensing:
    """Walsh–Hadamard compressed sensing: keep ceil(HW/ratio) permuted coefficients per channel."""
    return CompressedSensing(shape, ratio=ratio, seed=seed)


def _strategy() -> st.SearchStrategy[dict[str, Any]]:
    side = st.sampled_from([1, 2, 4, 8, 16])
    return st.fixed_dictionaries(
        {
            "shape": st.tuples(st.sampled_from([1, 3]), side, side),
            "ratio": st.one_of(st.sampled_from([1, 2, 4, 8]), st.floats(1.0, 20.0)),
            "seed": st.integers(0, 2**31 - 1),
        }
    )


@opkit.hookimpl
def opkit_register_operators(registry: Any) -> None:
    """Register ``cs``."""
    registry.add_operator("cs", _factory, strategy=_strategy())
