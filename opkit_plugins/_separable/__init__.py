"""Shared machinery of the separable operators (``blur``, ``sr_bicubic``): Kronecker SVDs.

A separable linear map of an image ``X`` (one ``H × W`` channel) is ``Y = A_c X A_rᵀ`` where
``A_c`` (``m_c × H``) acts along the columns (vertically) and ``A_r`` (``m_r × W``) along the
rows (horizontally). Flattening images row-major (as ``torch`` does), ``H = A_c ⊗ A_r`` (the DDRM
paper, appendix D.5, writes ``A_r ⊗ A_c`` for column-major flattening). With the 1-D SVDs
``A_c = U_c S_c V_cᵀ`` and ``A_r = U_r S_r V_rᵀ``,

.. math::

    H = (U_c ⊗ U_r)\\,(S_c ⊗ S_r)\\,(V_c ⊗ V_r)^T ,

so ``Vᵀ x`` is ``V_cᵀ X V_r`` and ``V v`` is ``V_c Ṽ V_rᵀ``: two small matrix products per channel,
never an ``n × n`` matrix. The singular value paired with the coefficient ``(i, j)`` of
``V_cᵀ X V_r`` is ``s_c[i] · s_r[j]`` (the outer product of the 1-D singular values). Here the
spectral layout *is* that ``(C, H, W)`` grid, so each coefficient sits next to its own singular value
by construction; nothing is sorted or permuted (the reference implementation sorts globally and
pairs values with the wrong coefficients when channels are interleaved).

The package holds one module per part:

* :mod:`~opkit_plugins._separable.correlation` -- 1-D (and separable 2-D) correlations: the dense
  1-D matrices and the direct maps the operators apply;
* :mod:`~opkit_plugins._separable.factor` -- :class:`~opkit_plugins._separable.factor.Factor`, a
  1-D matrix with its thresholded SVD;
* :mod:`~opkit_plugins._separable.dct` -- fast DCTs and the factor of a reflective correlation,
  which the DCT diagonalises (no eigendecomposition);
* :mod:`~opkit_plugins._separable.factorization` -- float64 SVDs of 1-D matrices, cached by kernel
  and geometry;
* :mod:`~opkit_plugins._separable.operator` -- the operator built from two factors,
  :class:`~opkit_plugins._separable.operator.SeparableSVDOperator`.

1-D convolution matrices are built by
:func:`~opkit_plugins._separable.correlation.correlation_matrix` and factorised once in float64 by
:func:`~opkit_plugins._separable.factorization.factorize`
(:func:`~opkit_plugins._separable.factorization.correlation_factor` caches by kernel and
geometry); the factors are cast lazily to the data's device and dtype.
"""
