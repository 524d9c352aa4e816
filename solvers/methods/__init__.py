"""The solver loops, one module per method; each function is ``solvers.<method>``.

* :mod:`solvers.methods.ddrm` -- :func:`solvers.ddrm`, DDRM for SVD operators and DDRM-JPEG for
  encode/decode pairs;
* :mod:`solvers.methods.pigdm` -- :func:`solvers.pigdm`, pseudoinverse-guided diffusion;
* :mod:`solvers.methods.diffpir` -- :func:`solvers.diffpir`, plug-and-play diffusion with an exact
  spectral data step;
* :mod:`solvers.methods.dps` -- :func:`solvers.dps`, diffusion posterior sampling;
* :mod:`solvers.methods.driftrec` -- :func:`solvers.driftrec`, DriftRec's reverse SDE.

The modules are named after their methods but live here, so that ``solvers.ddrm`` is the
function (DESIGN.md section 2) and ``solvers.methods.ddrm`` the module, whatever way they are
imported.
"""
