"""Operator types: the typed interface every degradation implements.

Three levels, each a refinement of the one above:

* :class:`Operator` -- any degradation ``y = H(x)`` with a pseudo-inverse ``H†``.
* :class:`LinearOperator` -- a linear ``H`` that also has the adjoint ``Hᵀ``.
* :class:`SVDOperator` -- a linear ``H = U Σ Vᵀ`` whose factors are applied implicitly;
  forward, adjoint and pseudo-inverse are derived from them.

and one sibling for the non-linear case:

* :class:`EncodeDecodeOperator` -- an encoder ``Encode`` (the forward map) and a decoder
  ``Decode`` (its pseudo-inverse) such as JPEG or bit-depth quantization.

Conventions (DESIGN.md section 5): images are ``(B, C, H, W)`` float tensors with values in
``[0, 1]``; an operator is built for one image shape ``(C, H, W)`` and works for any batch size,
any device and both float32 and float64.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

import torch
from torch import Tensor

__all__ = [
    "DiagonalOperator",
    "EncodeDecodeOperator",
    "LinearOperator",
    "Operator",
    "SVDOperator",
    "all_finite",
    "check_shape",
    "per_sample",
]

Y = TypeVar("Y")

Shape = tuple[int, int, int]


def all_finite(t: Tensor) -> bool:
    """Whether every element of the floating tensor ``t`` is finite (NaN and ±inf are not).

    A sum is finite only if every term is (a NaN or an infinity propagates, and ``+inf`` meets
    ``-inf`` as NaN), so a finite ``t.sum()`` settles it with one reduction and no temporary;
    only a non-finite sum, which huge but finite values may also give by overflow, pays for the
    elementwise :func:`torch.isfinite`. On a CPU batch of 4 × 3 × 256² float32 the sum costs
    about 0.1 ms and ``torch.isfinite(t).all()`` about 3 ms (it writes a boolean tensor first).
    One host synchronisation on an accelerator.

    Parameters
    ----------
    t : torch.Tensor
        A floating tensor.

    Returns
    -------
    bool
        ``True`` when no element is NaN or infinite.

    Examples
    --------
    >>> all_finite(torch.tensor([1.0, 3e38, 3e38]))  # the sum overflows, the values do not
    True
    >>> all_finite(torch.tensor([1.0, float("nan")]))
    False
    """
    if bool(torch.isfinite(t.sum())):
        return True
    return bool(torch.isfinite(t).all())


def check_shape(shape: Any) -> Shape:
    """Validate and normalise an image shape ``(C, H, W)``.

    Parameters
    ----------
    shape : sequence of int
        Channels, height and width, each a positive integer.

    Returns
    -------
    tuple of int
        The shape as a tuple of three Python ints.

    Raises
    ------
    ValueError
        If ``shape`` is not three positive integers.
    """
    try:
        dims = tuple(int(d) for d in shape)
    except TypeError as exc:
        raise ValueError(f"shape must be (C, H, W), got {shape!r}") from exc
    if len(dims) != 3 or any(d <= 0 for d in dims):
        raise ValueError(f"shape must be three positive integers (C, H, W), got {shape!r}")
    if any(isinstance(d, bool) or int(d) != d for d in shape):
        raise ValueError(f"shape must hold integers, got {shape!r}")
    return dims  # type: ignore[return-value]


class Operator(abc.ABC, Generic[Y]):
    """A degradation ``y = H(x)`` together with its pseudo-inverse ``H†``.

    Subclasses implement :meth:`forward` and :meth:`pinv`. Calling the operator, ``op(x)``,
    validates ``x`` (a floating ``(B, C, H, W)`` tensor of :attr:`shape`) and then applies
    :meth:`forward`.

    Parameters
    ----------
    shape : tuple of int
        The image shape ``(C, H, W)`` the operator acts on.
    """

    #: Registered name of the operator (set by the registry when created through it).
    name: str = ""

    def __init__(self, shape: Shape) -> None:
        self._shape = check_shape(shape)
        self._cast_cache: dict[tuple[str, torch.device, torch.dtype], Tensor] = {}

    @property
    def shape(self) -> Shape:
        """The image shape ``(C, H, W)`` this operator acts on."""
        return self._shape

    def __call__(self, x: Tensor) -> Y:
        """Apply the forward map ``H`` after validating ``x``."""
        self.check_input(x)
        return self.forward(x)

    @abc.abstractmethod
    def forward(self, x: Tensor) -> Y:
        """The forward map ``y = H(x)`` for ``x`` of shape ``(B, *shape)``."""

    def lift_to_rgb(self, y: Y) -> tuple[Operator[Any], Any] | None:
        """The three-channel problem whose solutions, in grey, solve ``(self, y)``; or ``None``.

        Used to restore a greyscale image with a colour model. An operator whose measurement of
        a grey image has its own three-channel form overrides this (JPEG: the luma coefficients
        with zero chroma, since a grey RGB image has ``Cb = Cr = 128`` exactly). ``None``, the
        default, leaves the lift to the caller; the command line then repeats ``y`` over three
        channels for operators that treat the channels alike.

        Parameters
        ----------
        y : measurement
            A measurement of this operator (one channel).

        Returns
        -------
        (Operator, measurement) or None
            The operator for ``(3, H, W)`` images and its measurement.
        """
        return None

    @abc.abstractmethod
    def pinv(self, y: Y) -> Tensor:
        """The pseudo-inverse ``H†(y)``, an image of shape ``(B, *shape)``."""

    def check_input(self, x: Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is a floating ``(B, *shape)`` tensor.

        Parameters
        ----------
        x : torch.Tensor
            Candidate input image batch.
        """
        if not isinstance(x, Tensor):
            raise TypeError(f"{self.label}: expected a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise ValueError(f"{self.label}: expected a floating tensor, got {x.dtype}")
        if x.ndim != 4 or tuple(x.shape[1:]) != self.shape:
            raise ValueError(
                f"{self.label}: expected input of shape (B, {', '.join(map(str, self.shape))}),"
                f" got {tuple(x.shape)}"
            )

    @property
    def label(self) -> str:
        """The operator's name for messages: its registered name, else its class name."""
        return self.name or type(self).__name__

    def cast(self, key: str, tensor: Tensor, like: Tensor) -> Tensor:
        """Return ``tensor`` on the device and dtype of ``like``, cached per (key, device, dtype).

        Operators keep their constant buffers (masks, bases, singular values) in one precision
        and use this to move them next to the data once, not on every call.

        Parameters
        ----------
        key : str
            Name of the buffer (cache key).
        tensor : torch.Tensor
            The buffer in its stored precision.
        like : torch.Tensor
            A tensor with the wanted device and dtype.

        Returns
        -------
        torch.Tensor
            ``tensor`` converted to ``like``'s device and (floating) dtype.
        """
        dtype = like.dtype if tensor.is_floating_point() else tensor.dtype
        k = (key, like.device, dtype)
        hit = self._cast_cache.get(k)
        if hit is None:
            hit = tensor.to(device=like.device, dtype=dtype)
            self._cast_cache[k] = hit
        return hit

    def __repr__(self) -> str:
        params = getattr(self, "params", None)
        inner = f", {params!r}" if params is not None else ""
        return f"{type(self).__name__}(shape={self.shape}{inner})"


class LinearOperator(Operator[Tensor]):
    """A linear operator ``H``: forward, adjoint ``Hᵀ`` and pseudo-inverse ``H†``.

    Subclasses implement :meth:`forward`, :meth:`adjoint`, :meth:`pinv` and :attr:`out_shape`.
    Operators compose with ``@``: ``(A @ B)(x) == A(B(x))`` with the adjoint derived as
    ``Bᵀ Aᵀ``.
    """

    @property
    @abc.abstractmethod
    def out_shape(self) -> tuple[int, ...]:
        """Shape of a measurement without the batch axis, e.g. ``(C, H/f, W/f)``."""

    @abc.abstractmethod
    def adjoint(self, y: Tensor) -> Tensor:
        """The adjoint (transpose) ``Hᵀ y``, an image of shape ``(B, *shape)``."""

    def check_measurement(self, y: Tensor) -> None:
        """Raise ``ValueError`` unless ``y`` is a floating ``(B, *out_shape)`` tensor.

        Parameters
        ----------
        y : torch.Tensor
            Candidate measurement batch.
        """
        if not isinstance(y, Tensor):
            raise TypeError(f"{self.label}: expected a torch.Tensor, got {type(y).__name__}")
        if not y.is_floating_point():
            raise ValueError(f"{self.label}: expected a floating measurement, got {y.dtype}")
        if y.ndim != 1 + len(self.out_shape) or tuple(y.shape[1:]) != tuple(self.out_shape):
            raise ValueError(
                f"{self.label}: expected a measurement of shape (B, "
                f"{', '.join(map(str, self.out_shape))}), got {tuple(y.shape)}"
            )

    def __matmul__(self, other: LinearOperator) -> LinearOperator:
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return ComposedOperator(self, other)


class ComposedOperator(LinearOperator):
    """The composition ``A @ B`` of two linear operators: ``x ↦ A(B(x))``.

    The adjoint is derived (``Bᵀ Aᵀ``). The pseudo-inverse of a product is not the product of
    pseudo-inverses in general; it is computed here by conjugate gradients on the normal
    equations (CGLS from zero, which converges to the minimum-norm least-squares solution).

    Parameters
    ----------
    outer, inner : LinearOperator
        ``A`` and ``B``; ``B.out_shape`` must equal ``A.shape``.
    cg_iters : int
        Iterations of CGLS used by :meth:`pinv`.
    """

    def __init__(self, outer: LinearOperator, inner: LinearOperator, cg_iters: int = 200) -> None:
        if tuple(inner.out_shape) != tuple(outer.shape):
            raise ValueError(
                f"cannot compose: inner output {tuple(inner.out_shape)} != outer input {outer.shape}"
            )
        super().__init__(inner.shape)
        self.outer, self.inner, self.cg_iters = outer, inner, cg_iters

    @property
    def out_shape(self) -> tuple[int, ...]:
        """Shape of the outer operator's measurement."""
        return tuple(self.outer.out_shape)

    def forward(self, x: Tensor) -> Tensor:
        """``A(B(x))``."""
        return self.outer.forward(self.inner.forward(x))

    def adjoint(self, y: Tensor) -> Tensor:
        """``Bᵀ(Aᵀ(y))``."""
        return self.inner.adjoint(self.outer.adjoint(y))

    def pinv(self, y: Tensor) -> Tensor:
        """Minimum-norm least-squares solution of ``A B x = y`` by CGLS."""
        x = torch.zeros((y.shape[0], *self.shape), dtype=y.dtype, device=y.device)
        r = y.clone()
        s = self.adjoint(r)
        p = s.clone()
        gamma = _bdot(s, s)
        tiny = torch.finfo(y.dtype).tiny
        for _ in range(self.cg_iters):
            q = self.forward(p)
            qq = _bdot(q, q)
            alpha = torch.where(qq > tiny, gamma / qq.clamp_min(tiny), torch.zeros_like(qq))
            x = x + per_sample(alpha, x) * p
            r = r - per_sample(alpha, r) * q
            s = self.adjoint(r)
            gamma_new = _bdot(s, s)
            if bool((gamma_new <= (1e3 * torch.finfo(y.dtype).eps) ** 2 * _bdot(y, y)).all()):
                break
            beta = torch.where(gamma > tiny, gamma_new / gamma.clamp_min(tiny), torch.zeros_like(gamma))
            p = s + per_sample(beta, p) * p
            gamma = gamma_new
        return x

    def __repr__(self) -> str:
        return f"({self.outer!r} @ {self.inner!r})"


def _bdot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).flatten(1).sum(1)


@overload
def per_sample(v: Tensor, like: Tensor) -> Tensor: ...
@overload
def per_sample(v: float, like: Tensor) -> float: ...
def per_sample(v: Tensor | float, like: Tensor) -> Tensor | float:
    """A per-sample coefficient ``(B,)`` shaped to broadcast against a batch ``like`` ``(B, ...)``.

    A tensor of shape ``(B,)`` becomes ``(B, 1, …, 1)`` on ``like``'s device and dtype; a 0-d
    tensor stays 0-d (it broadcasts already) and a Python number stays a number. The one
    broadcast helper of the project: the core's solvers (CG) and the packages of
    :mod:`solvers` use it alike.
    """
    if not isinstance(v, Tensor):
        return v
    v = v.to(device=like.device, dtype=like.dtype)
    if v.ndim == 0:
        return v
    return v.reshape(v.shape[0], *([1] * (like.ndim - 1)))


class SVDOperator(LinearOperator):
    """A linear operator ``H = U Σ Vᵀ`` given by its singular value decomposition.

    The factors are applied implicitly, in memory proportional to the image. A subclass
    implements only :meth:`Vt`, :meth:`V`, :meth:`Ut`, :meth:`U`, :attr:`singulars` and
    :attr:`out_shape`; :meth:`forward`, :meth:`adjoint` and :meth:`pinv` are derived::

        H x  = U(s · Vᵀ x)        Hᵀ y = V(s · Uᵀ y)        H† y = V(s⁺ · Uᵀ y)

    where ``s⁺ = 1/s`` where ``s > 0`` and ``0`` elsewhere (no division by zero ever happens).

    **Spectral layout.** ``Vt(x)`` returns the ``n = C·H·W`` spectral coefficients of ``x`` in
    a layout of the subclass's choosing (its *spectral shape*, without the batch axis).
    :attr:`singulars` is broadcastable to that layout and is zero on the null space of ``H``.
    ``Ut(y)`` returns a tensor in the same spectral layout, zero on the coordinates ``y`` does
    not measure, and ``U(v)`` reads only the measured coordinates, so that ``U(Ut(y)) = y``
    for every ``y`` in the range of ``H`` (``U Uᵀ = I`` on the measured coordinates) and
    ``V(Vt(x)) = x`` (``V`` is orthogonal). A subclass may override :meth:`forward` with a
    faster direct implementation; the testing kit checks it still equals ``U Σ Vᵀ``.
    """

    @abc.abstractmethod
    def Vt(self, x: Tensor) -> Tensor:
        """Spectral coefficients ``Vᵀ x`` of an image batch ``x``."""

    @abc.abstractmethod
    def V(self, v: Tensor) -> Tensor:
        """The image ``V v`` of spectral coefficients ``v``."""

    @abc.abstractmethod
    def Ut(self, y: Tensor) -> Tensor:
        """``Uᵀ y`` in the spectral layout, zero on unmeasured coordinates."""

    @abc.abstractmethod
    def U(self, v: Tensor) -> Tensor:
        """The measurement ``U v`` built from the measured coordinates of ``v``."""

    @property
    @abc.abstractmethod
    def singulars(self) -> Tensor:
        """Singular values, broadcastable to ``Vt(x)[0]``; zero on the null space."""

    def singulars_like(self, like: Tensor) -> Tensor:
        """:attr:`singulars` on the device and dtype of ``like`` (cached).

        Parameters
        ----------
        like : torch.Tensor
            Tensor whose device and dtype are wanted.

        Returns
        -------
        torch.Tensor
            The singular values.
        """
        return self.cast("__singulars__", self.singulars, like)

    def singulars_pinv_like(self, like: Tensor) -> Tensor:
        """The pseudo-inverted singular values ``s⁺`` (``1/s`` where ``s > 0``, else ``0``; finite
        everywhere), on the device and dtype of the tensor ``like`` (cached)."""
        key = ("__singulars_pinv__", like.device, like.dtype)
        hit = self._cast_cache.get(key)
        if hit is None:
            s = self.singulars.to(torch.float64)
            pos = s > 0
            hit = torch.where(pos, 1.0 / torch.where(pos, s, torch.ones_like(s)), torch.zeros_like(s))
            hit = hit.to(device=like.device, dtype=like.dtype)
            self._cast_cache[key] = hit
        return hit

    def forward(self, x: Tensor) -> Tensor:
        """``H x = U(s · Vᵀ x)``."""
        return self.U(self.singulars_like(x) * self.Vt(x))

    def adjoint(self, y: Tensor) -> Tensor:
        """``Hᵀ y = V(s · Uᵀ y)``."""
        self.check_measurement(y)
        return self.V(self.singulars_like(y) * self.Ut(y))

    def pinv(self, y: Tensor) -> Tensor:
        """``H† y = V(s⁺ · Uᵀ y)``; finite for any finite ``y``."""
        self.check_measurement(y)
        return self.V(self.singulars_pinv_like(y) * self.Ut(y))


class DiagonalOperator(SVDOperator):
    """An operator ``H = diag(s)`` acting coordinate by coordinate: ``U = V = I``.

    The measurement has the image's shape and the spectral layout is the image itself, so a
    subclass gives only :attr:`singulars`, broadcastable to ``(C, H, W)`` (identity: ones;
    inpainting: the 0/1 mask). Where some ``s`` are zero, ``Ut``/``U`` here are the identity
    as well; a subclass whose measurement is zero off the measured coordinates (inpainting)
    may override them to say so.
    """

    @property
    def out_shape(self) -> tuple[int, ...]:
        """Same as :attr:`shape`."""
        return self.shape

    def Vt(self, x: Tensor) -> Tensor:
        """Identity."""
        return x

    def V(self, v: Tensor) -> Tensor:
        """Identity."""
        return v

    def Ut(self, y: Tensor) -> Tensor:
        """Identity."""
        return y

    def U(self, v: Tensor) -> Tensor:
        """Identity."""
        return v


class EncodeDecodeOperator(Operator[Y]):
    """A non-linear encode/decode pair: ``H = Encode`` and ``H† = Decode``.

    Subclasses implement :meth:`encode` and :meth:`decode`. The laws (checked by
    :func:`opkit.testing.check_operator`) are ``Encode(Decode(Encode(x))) == Encode(x)``
    exactly in the coded domain, and ``Decode(Encode(x))`` close to ``x`` (root-mean-square
    error at most :meth:`roundtrip_tolerance`).
    """

    @abc.abstractmethod
    def encode(self, x: Tensor) -> Y:
        """Encode an image batch into the coded domain."""

    @abc.abstractmethod
    def decode(self, y: Y) -> Tensor:
        """Decode a measurement back to an image batch ``(B, *shape)``."""

    def forward(self, x: Tensor) -> Y:
        """``H(x) = Encode(x)``."""
        return self.encode(x)

    def check_input(self, x: Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is a finite floating ``(B, *shape)`` tensor.

        An encoder turns every value into an integer code, so NaN or infinity would become a
        plausible-looking code without a trace; they are refused here.

        Parameters
        ----------
        x : torch.Tensor
            Candidate input image batch.
        """
        super().check_input(x)
        if not all_finite(x):
            raise ValueError(f"{self.label}: the image contains NaN or infinity")

    def check_measurement(self, y: Y) -> None:
        """Raise ``ValueError`` unless ``y`` is a measurement this operator can produce.

        Solvers call it before using ``y`` with :meth:`encode` and :meth:`decode`: a code made
        with other settings (another quantisation table, another bit depth) decodes to an
        image, but not to one this operator's encoder maps back to ``y``. The default accepts
        everything; subclasses check what their codes must satisfy.

        Parameters
        ----------
        y : measurement
            Candidate measurement batch.
        """

    def pinv(self, y: Y) -> Tensor:
        """``H†(y) = Decode(y)``."""
        return self.decode(y)

    def display(self, y: Y) -> Tensor:
        """The image a standard viewer shows for ``y`` (the baseline a restoration must beat).

        Defaults to :meth:`decode`. A format whose usual decoder differs from the decode that
        keeps the pseudo-inverse laws exact overrides it (JPEG: libjpeg's decoder, with its
        triangle upsampling and 8-bit rounding).

        Parameters
        ----------
        y : measurement
            A measurement of this operator.

        Returns
        -------
        torch.Tensor
            ``(B, *shape)`` images in ``[0, 1]``.
        """
        return self.decode(y)

    def calibrate(self, x: Tensor, decoded: Tensor) -> Tensor:
        """A restoration's global statistics brought back to what the measurement pins down.

        A prior pulls a restoration toward its own typical statistics wherever the code allows
        a wide range (JPEG's coarse chroma bins let a prior grey the colours). Solvers that
        restore from ``Decode(y)`` pass their result through this method with the decode as
        the reference (DDRM and ΠGDM: each sample and their mean). The default changes nothing;
        JPEG keeps the mean chroma magnitude no more than :data:`opkit_plugins.jpeg.CHROMA_BAND`
        below the decode's and a grey file's restoration grey.

        Parameters
        ----------
        x : torch.Tensor
            ``(B, *shape)`` restorations in ``[0, 1]``.
        decoded : torch.Tensor
            ``(B, *shape)``: ``Decode(y)`` of each row's measurement.

        Returns
        -------
        torch.Tensor
            ``x`` itself when nothing is to be corrected, else a corrected tensor in ``[0, 1]``.
        """
        return x

    def codes(self, y: Y) -> Tensor:
        """The integer codes of a measurement as one tensor ``(B, ...)``, for exact comparison.

        The default returns ``y`` itself when it is a tensor; structured measurements override.

        Parameters
        ----------
        y : measurement
            Output of :meth:`encode`.

        Returns
        -------
        torch.Tensor
            A tensor whose first axis is the batch.
        """
        if isinstance(y, Tensor):
            return y
        raise NotImplementedError(f"{type(self).__name__} must implement codes() for {type(y).__name__}")

    def relaxed_codes(self, x: Tensor) -> Tensor | None:
        r"""A differentiable relaxation of the encoder, in the layout of :meth:`codes`; ``None`` if none.

        The real-valued codes :math:`r(x)` the encoder rounds: a floating tensor of the shape of
        ``codes(encode(x))``, differentiable in ``x`` (autograd), whose rounding to the nearest
        integer gives the codes,

        .. math::

            |\operatorname{codes}(\operatorname{Encode}(x)) - r(x)| \le \tfrac12
            \quad \text{elementwise, for images } x \text{ in } [0, 1]

        (checked by :func:`opkit.testing.check_operator`). Solvers that need the gradient of a
        measurement residual use it in place of the piecewise-constant encoder (DPS:
        :math:`\nabla_x \|\operatorname{codes}(y) - r(x)\|`); its zero is then the centre of
        each code's cell. The default, ``None``, says the pair has none; such solvers refuse
        it. JPEG: the DCT coefficients divided by the tables, before rounding; quantization:
        :math:`2^b x - \tfrac12`.

        Parameters
        ----------
        x : torch.Tensor
            ``(B, *shape)`` floating images.

        Returns
        -------
        torch.Tensor or None
            The relaxed codes, or ``None``.
        """
        return None

    def roundtrip_tolerance(self) -> float:
        """Largest root-mean-square error of ``Decode(Encode(x))`` against ``x`` in [0, 1].

        Returns
        -------
        float
            The bound used by the testing kit; subclasses derive a tight one.
        """
        return 0.5

    def map_measurement(self, y: Y, fn: Callable[[Tensor], Tensor]) -> Y:
        """Apply ``fn`` to every tensor inside a measurement (e.g. to move it to a device).

        Parameters
        ----------
        y : measurement
            Output of :meth:`encode`.
        fn : callable
            Tensor-to-tensor function.

        Returns
        -------
        measurement
            A measurement of the same type.
        """
        if isinstance(y, Tensor):
            return fn(y)  # type: ignore[return-value]
        raise NotImplementedError(f"{type(self).__name__} must implement map_measurement()")
