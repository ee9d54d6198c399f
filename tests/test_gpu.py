"""The same computations on CUDA as on the CPU (skipped on machines without a GPU, such as CI)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from surrogates.models.fno import FNO
from surrogates.pdes.darcy import Darcy
from surrogates.solvers.finite_differences import diffusion_operator
from surrogates.solvers.pcg import pcg
from surrogates.solvers.preconditioners import (
    AMGPreconditioner,
    IC0Preconditioner,
    IdentityPreconditioner,
    JacobiPreconditioner,
)
from surrogates.solvers.sparse import SparseMatrix

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

BUILDERS = {
    "none": lambda A: IdentityPreconditioner(),
    "jacobi": JacobiPreconditioner,
    "ic0": IC0Preconditioner,
    "amg": AMGPreconditioner,
}


def _darcy_matrices(n: int, s: int = 33):
    coefficients = Darcy(resolution=s).sample_inputs(n, np.random.default_rng(0))["a"]
    return [diffusion_operator(a) for a in coefficients]


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_pcg_on_cuda_matches_cpu(name):
    A = _darcy_matrices(1)[0]
    b = torch.from_numpy(np.random.default_rng(1).normal(size=(4, A.shape[0])))
    cpu = pcg(A, b, preconditioner=BUILDERS[name](A), rtol=1e-10)
    gpu = pcg(A, b.cuda(), preconditioner=BUILDERS[name](A), rtol=1e-10)
    assert gpu.x.is_cuda and bool(gpu.converged.all())
    # other summation orders: the same recurrences up to round-off, which unpreconditioned CG (~200
    # iterations) amplifies enough to move a count by one (1-ulp perturbations of b do so on the CPU)
    assert (gpu.iterations.cpu() - cpu.iterations).abs().max() <= 1
    # both meet ||b - A x|| <= 1e-10 ||b||, so ||x_gpu - x_cpu|| <= 2e-10 ||b|| / lambda_min(A) = 6e-11
    # here, below atol whatever the counts
    torch.testing.assert_close(gpu.x.cpu(), cpu.x, rtol=1e-8, atol=1e-10)
    x = gpu.x.cpu().numpy()
    residual = np.linalg.norm(b.numpy() - (A @ x.T).T, axis=1)
    # the GPU tested its own residual; this one is evaluated in another order, within ~6 eps (|b| + |A| |x|)
    # (five nonzeros a row and a subtraction): 2e-4 of the tolerance here
    roundoff = 6 * np.finfo(np.float64).eps * np.linalg.norm(np.abs(b.numpy()) + (abs(A) @ np.abs(x).T).T, axis=1)
    assert np.all(residual <= 1e-10 * np.linalg.norm(b.numpy(), axis=1) + roundoff)


def test_batched_matrices_on_cuda_float32():
    matrices = _darcy_matrices(8)
    A = SparseMatrix.from_scipy(matrices, device="cuda", dtype=torch.float32)
    b = torch.ones(8, matrices[0].shape[0], device="cuda", dtype=torch.float32)
    result = pcg(A, b, preconditioner=JacobiPreconditioner(matrices), rtol=1e-5)
    assert bool(result.converged.all())
    eps32 = float(np.finfo(np.float32).eps)
    for i, matrix in enumerate(matrices):
        x = result.x[i].double().cpu().numpy()
        # the stopping rule holds for the float32 residual the GPU computed, which is within
        # gamma_6 (|b| + |A| |x|) ~ 3 eps32 (...) of the exact one: |A| |x| ~ 1e3 |b| here (-div(a grad u) = 1
        # with a up to 12 on h = 1/32), so that round-off (~1.3e-4 sqrt(n)) exceeds the rule's 1e-5 sqrt(n)
        roundoff = 3 * eps32 * np.linalg.norm(1.0 + abs(matrix) @ np.abs(x))
        assert np.linalg.norm(1.0 - matrix @ x) <= 1e-5 * np.sqrt(matrix.shape[0]) + roundoff


def test_fno_on_cuda_matches_cpu():
    torch.manual_seed(0)
    model = FNO(in_channels=1, out_channels=1, modes=8, width=16)
    x = torch.randn(3, 1, 40, 40)
    expected = model(x)
    got = model.cuda()(x.cuda()).cpu()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
