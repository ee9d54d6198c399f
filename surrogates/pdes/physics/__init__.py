"""Physics-informed problems: single PDE instances with residuals for PINN-style training.

Each problem gives its domain box, its residual by autograd, its boundary / initial conditions and a
reference solution on a grid (closed form, or the project's own solvers).
"""

from surrogates.pdes.physics.allen_cahn import AllenCahn
from surrogates.pdes.physics.base import PhysicsProblem, Reference
from surrogates.pdes.physics.helmholtz import Helmholtz2D
from surrogates.pdes.physics.klein_gordon import KleinGordon
from surrogates.pdes.physics.poisson import DarcyPoisson

__all__ = ["AllenCahn", "DarcyPoisson", "Helmholtz2D", "KleinGordon", "PhysicsProblem", "Reference"]
