"""A small CSR sparse-matrix wrapper for the batched PCG and its preconditioners.

:class:`SparseMatrix` holds one ``n x n`` matrix, or a batch of ``B`` matrices that share one sparsity
pattern, as CSR index tensors plus values of shape ``(nnz,)`` or ``(B, nnz)``. Its :meth:`matvec`
multiplies a batch of vectors ``x`` of shape ``(B, n)``.

Two kernels, chosen per call (measured on a 2-core CPU, 5-point Laplacian, float64, one thread):

* CPU, no autograd: scipy's compiled CSR kernels (``csr_matvec`` / ``csr_matvecs``) on zero-copy
  numpy views of the torch tensors. For one vector it ties with torch's sparse CSR ``mv``; for 32
  vectors stored as ``(n, B)`` it was about 5x faster than ``torch.sparse_csr @ dense (n, B)`` at
  256^2 and 512^2, because it streams the matrix once and the ``B`` values of each column row by row.
* Anything else (CUDA, autograd, other dtypes): torch sparse CSR ``@`` dense (cuSPARSE on GPU).

Memory layout matters for the shared-matrix case: vectors stored column-major, i.e. ``x`` is the
transpose view of a contiguous ``(n, B)`` tensor, feed the kernel without a copy.
:meth:`SparseMatrix.empty_vectors` allocates in the layout the matrix prefers, and every elementwise
torch op keeps that layout, so the PCG loop never transposes. A batch of matrices is multiplied as
one block-diagonal CSR matrix of size ``B n`` on the row-major ``(B, n)`` vectors.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch

try:  # scipy's compiled CSR kernels, which accumulate into a preallocated output
    from scipy.sparse import _sparsetools
except ImportError:  # pragma: no cover - private module; fall back to scipy's public operator
    _sparsetools = None

__all__ = ["SparseMatrix", "as_sparse_matrix", "csr_from_scipy", "csr_tensor", "move_csr"]

_SCIPY_DTYPES = (torch.float32, torch.float64)


class SparseMatrix:
    """One CSR matrix, or a batch of CSR matrices sharing one sparsity pattern, in torch.

    Parameters
    ----------
    crow_indices
        Row pointers, shape ``(n + 1,)``, integer.
    col_indices
        Column indices, shape ``(nnz,)``, integer, sorted within each row.
    values
        Shape ``(nnz,)`` for one matrix or ``(B, nnz)`` for a batch of ``B`` matrices.
    n
        Number of rows (= columns); inferred from ``crow_indices`` when omitted.

    Notes
    -----
    Index tensors are kept as int32 when ``n * B`` and ``nnz * B`` fit (scipy and cuSPARSE are fastest
    with 32-bit indices), int64 otherwise. The matrices must be square.
    """

    def __init__(
        self,
        crow_indices: torch.Tensor,
        col_indices: torch.Tensor,
        values: torch.Tensor,
        n: int | None = None,
    ) -> None:
        crow_indices = torch.as_tensor(crow_indices)
        col_indices = torch.as_tensor(col_indices)
        values = torch.as_tensor(values)
        if crow_indices.ndim != 1 or col_indices.ndim != 1:
            raise ValueError("crow_indices and col_indices must be 1-D")
        if values.ndim not in (1, 2) or values.shape[-1] != col_indices.numel():
            raise ValueError(
                f"values must have shape (nnz,) or (B, nnz) with nnz={col_indices.numel()}, got {tuple(values.shape)}"
            )
        if not values.is_floating_point():
            values = values.to(torch.float64)
        self.n = int(crow_indices.numel() - 1) if n is None else int(n)
        if crow_indices.numel() != self.n + 1:
            raise ValueError(f"crow_indices must have n + 1 = {self.n + 1} entries, got {crow_indices.numel()}")
        batch = 1 if values.ndim == 1 else values.shape[0]
        index_dtype = torch.int32 if max(self.n, col_indices.numel()) * batch < 2**31 - 1 else torch.int64
        self.crow_indices = crow_indices.to(device=values.device, dtype=index_dtype).contiguous()
        self.col_indices = col_indices.to(device=values.device, dtype=index_dtype).contiguous()
        self.values = values.contiguous()
        self._cache: dict[str, Any] = {}

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def from_scipy(
        cls,
        A: sp.spmatrix | sp.sparray | Sequence[sp.spmatrix | sp.sparray],
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> "SparseMatrix":
        """Build from a scipy sparse matrix, or from a list of matrices with one sparsity pattern.

        Parameters
        ----------
        A
            A square scipy sparse matrix ``(n, n)``, or a sequence of ``B`` of them (batched values).
        device, dtype
            Where to put the values; float64 by default (or the matrix dtype if it is float32).
        """
        if isinstance(A, (list, tuple)):
            mats = [_canonical_csr(a) for a in A]
            if not mats:
                raise ValueError("empty list of matrices")
            first = mats[0]
            for k, m in enumerate(mats[1:], start=1):
                if m.shape != first.shape or not (
                    np.array_equal(m.indptr, first.indptr) and np.array_equal(m.indices, first.indices)
                ):
                    raise ValueError(f"matrix {k} does not share the sparsity pattern of matrix 0")
            values = np.stack([m.data for m in mats])
        else:
            first = _canonical_csr(A)
            values = first.data
        if dtype is None:
            dtype = torch.float32 if values.dtype == np.float32 else torch.float64
        return cls(
            torch.from_numpy(first.indptr.astype(np.int64)),
            torch.from_numpy(first.indices.astype(np.int64)),
            torch.from_numpy(np.ascontiguousarray(values)).to(device=device, dtype=dtype),
            n=first.shape[0],
        )

    @classmethod
    def from_torch(cls, A: torch.Tensor) -> "SparseMatrix":
        """Build from a torch tensor: sparse CSR or COO ``(n, n)``, batched sparse CSR ``(B, n, n)``, or dense ``(n, n)``."""
        if A.layout == torch.strided:
            if A.ndim != 2:
                raise ValueError(f"a dense matrix must be 2-D, got shape {tuple(A.shape)}")
            A = A.to_sparse_csr()
        elif A.layout == torch.sparse_coo:
            A = A.coalesce().to_sparse_csr()
        elif A.layout != torch.sparse_csr:
            raise TypeError(f"unsupported torch layout {A.layout}")
        if A.shape[-1] != A.shape[-2]:
            raise ValueError(f"the matrix must be square, got shape {tuple(A.shape)}")
        crow, col = A.crow_indices(), A.col_indices()
        if A.ndim == 3:  # batched CSR: torch requires the same nnz per matrix; we need the same pattern
            if not (torch.equal(crow, crow[:1].expand_as(crow)) and torch.equal(col, col[:1].expand_as(col))):
                raise ValueError("the matrices of a batched CSR tensor must share one sparsity pattern")
            return cls(crow[0], col[0], A.values(), n=A.shape[-1])
        return cls(crow, col, A.values(), n=A.shape[-1])

    # -- properties ----------------------------------------------------------------------------

    @property
    def batch_size(self) -> int | None:
        """``B`` for a batch of matrices, ``None`` for one matrix."""
        return None if self.values.ndim == 1 else int(self.values.shape[0])

    @property
    def is_batched(self) -> bool:
        return self.values.ndim == 2

    @property
    def nnz(self) -> int:
        """Stored entries per matrix."""
        return int(self.col_indices.numel())

    @property
    def shape(self) -> tuple[int, ...]:
        """``(n, n)`` or ``(B, n, n)``."""
        return (self.n, self.n) if not self.is_batched else (self.batch_size, self.n, self.n)

    @property
    def dtype(self) -> torch.dtype:
        return self.values.dtype

    @property
    def device(self) -> torch.device:
        return self.values.device

    def __repr__(self) -> str:
        batch = f"batch={self.batch_size}, " if self.is_batched else ""
        return f"SparseMatrix({batch}n={self.n}, nnz={self.nnz}, dtype={self.dtype}, device={self.device})"

    # -- conversions ---------------------------------------------------------------------------

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "SparseMatrix":
        """A copy on ``device`` with values of ``dtype``; ``self`` when nothing changes."""
        device = self.device if device is None else torch.device(device)
        dtype = self.dtype if dtype is None else dtype
        if _same_device(device, self.device) and dtype == self.dtype:
            return self
        return SparseMatrix(self.crow_indices.to(device), self.col_indices.to(device), self.values.to(device, dtype), self.n)

    def to_scipy(self, index: int | None = None) -> sp.csr_matrix:
        """The matrix (or matrix ``index`` of a batch) as a scipy CSR matrix, values copied to the CPU."""
        values = self.values if index is None else self.values[index]
        if values.ndim != 1:
            raise ValueError("a batched SparseMatrix needs an index to convert to scipy")
        return sp.csr_matrix(
            (values.detach().cpu().numpy().copy(), self.col_indices.cpu().numpy().copy(), self.crow_indices.cpu().numpy().copy()),
            shape=(self.n, self.n),
        )

    def to_torch(self) -> torch.Tensor:
        """A torch sparse CSR tensor, ``(n, n)`` or batched ``(B, n, n)`` (sharing the index tensors)."""
        if not self.is_batched:
            return csr_tensor(self.crow_indices, self.col_indices, self.values, (self.n, self.n))
        B = self.batch_size
        return csr_tensor(self.crow_indices.expand(B, -1), self.col_indices.expand(B, -1), self.values, (B, self.n, self.n))

    def to_dense(self) -> torch.Tensor:
        """Dense ``(n, n)`` or ``(B, n, n)`` copy (for tests and small problems)."""
        return self.to_torch().to_dense()

    def select(self, index: torch.Tensor | Sequence[int]) -> "SparseMatrix":
        """The matrices ``index`` of a batch, as a smaller batch; ``self`` for one (shared) matrix."""
        if not self.is_batched:
            return self
        index = torch.as_tensor(index, device=self.device, dtype=torch.long)
        return SparseMatrix(self.crow_indices, self.col_indices, self.values[index], self.n)

    # -- numerics ------------------------------------------------------------------------------

    def row_indices(self) -> torch.Tensor:
        """Row index of every stored entry, shape ``(nnz,)`` (int64)."""
        if "rows" not in self._cache:
            counts = (self.crow_indices[1:] - self.crow_indices[:-1]).long()
            self._cache["rows"] = torch.repeat_interleave(torch.arange(self.n, device=self.device), counts)
        return self._cache["rows"]

    def diagonal(self) -> torch.Tensor:
        """Diagonal, shape ``(n,)`` or ``(B, n)``; zero where the pattern has no diagonal entry."""
        rows = self.row_indices()
        on_diag = rows == self.col_indices.long()
        out = self.values.new_zeros(self.values.shape[:-1] + (self.n,))
        out[..., rows[on_diag]] = self.values[..., on_diag]
        return out

    def empty_vectors(self, batch: int) -> torch.Tensor:
        """Uninitialized vectors of shape ``(batch, n)`` in the memory layout :meth:`matvec` prefers.

        One shared matrix prefers the transpose view of a contiguous ``(n, batch)`` tensor (each CSR row
        reads ``batch`` contiguous values); a batch of matrices prefers a contiguous ``(batch, n)``.
        """
        if self.is_batched:
            return torch.empty(batch, self.n, dtype=self.dtype, device=self.device)
        return torch.empty(self.n, batch, dtype=self.dtype, device=self.device).T

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        """``y = A x`` for a batch of vectors.

        Parameters
        ----------
        x
            Shape ``(B, n)`` (or ``(n,)``); for a batch of matrices ``B`` must equal the batch size and
            row ``b`` is multiplied by matrix ``b``; one shared matrix multiplies every row.

        Returns
        -------
        torch.Tensor
            Shape of ``x``. For one matrix and ``B > 1`` the result is laid out like
            :meth:`empty_vectors` (a transpose view), whatever the layout of ``x``.
        """
        if x.ndim == 1:
            return self.matvec(x[None])[0]
        if x.ndim != 2 or x.shape[1] != self.n:
            raise ValueError(f"x must have shape (B, {self.n}), got {tuple(x.shape)}")
        if self.values.ndim == 2 and x.shape[0] != self.values.shape[0]:
            raise ValueError(f"x has {x.shape[0]} rows for a batch of {self.values.shape[0]} matrices")
        if x.dtype != self.values.dtype or x.device != self.values.device:
            raise ValueError(f"x is {x.dtype} on {x.device}, the matrix is {self.dtype} on {self.device}")
        if self._use_scipy_kernel(x):
            return self._matvec_scipy(x)
        return self._matvec_torch(x)

    __matmul__ = matvec

    def _use_scipy_kernel(self, x: torch.Tensor) -> bool:
        return (
            x.is_cpu
            and x.dtype in _SCIPY_DTYPES
            and not ((x.requires_grad or self.values.requires_grad) and torch.is_grad_enabled())
        )

    def _matvec_scipy(self, x: torch.Tensor) -> torch.Tensor:
        # per-call Python overhead matters for small systems (a 1000-unknown matvec takes ~8 us):
        # the numpy views of the index and value arrays are made once and cached
        B, n = x.shape
        indptr, indices, data = self._numpy_arrays()
        if self.values.ndim == 2:  # one block-diagonal matrix of size B n on the flattened row-major vectors
            y = torch.zeros(B, n, dtype=x.dtype)
            _csr_matvec(B * n, indptr, indices, data, x.detach().contiguous().numpy().reshape(-1), y.numpy().reshape(-1))
            return y
        if B == 1:
            y = torch.zeros(1, n, dtype=x.dtype)
            _csr_matvec(n, indptr, indices, data, x.detach().numpy().reshape(n), y.numpy().reshape(n))
            return y
        xt = x.detach().T.contiguous()  # a view (no copy) when x came from empty_vectors
        y = torch.zeros(n, B, dtype=x.dtype)
        _csr_matvecs(n, B, indptr, indices, data, xt.numpy(), y.numpy())
        return y.T

    def numpy_kernel(self) -> Callable[[np.ndarray, np.ndarray], None] | None:
        """``f(x, y)``: ``y = A x`` for numpy vectors ``(n,)`` with scipy's compiled kernel, no allocation.

        For one matrix on the CPU in float32/float64 (else ``None``). PCG's single-system loop uses
        it to skip the per-call tensor bookkeeping of :meth:`matvec`, a sizable share of an
        iteration for ~10^3-10^4 unknowns.
        """
        if self.is_batched or self.device.type != "cpu" or self.dtype not in _SCIPY_DTYPES or _sparsetools is None:
            return None
        indptr, indices, data = self._numpy_arrays()
        n, kernel = self.n, _sparsetools.csr_matvec

        def matvec_into(x: np.ndarray, y: np.ndarray) -> None:
            y.fill(0.0)  # the kernel accumulates
            kernel(n, n, indptr, indices, data, x, y)

        return matvec_into

    def _matvec_torch(self, x: torch.Tensor) -> torch.Tensor:
        B, n = x.shape
        if self.is_batched:
            y = self._block_diagonal_torch() @ x.contiguous().reshape(-1)
            return y.view(B, n)
        A = self._torch_csr()
        if B == 1:
            return (A @ x.reshape(n))[None]
        return (A @ x.T.contiguous()).T

    # -- cached index structures ---------------------------------------------------------------

    def _numpy_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Zero-copy numpy views ``(indptr, indices, data)`` for scipy's kernels (block-diagonal if batched).

        Cached: ``values`` may be modified in place, but must not be reassigned.
        """
        plan = self._cache.get("np")
        if plan is None or plan[3] is not self.values:
            if self.values.ndim == 2:
                crow, col = self._block_diagonal_indices()
            else:
                crow, col = self.crow_indices, self.col_indices
            data = self.values.detach().numpy().reshape(-1)
            plan = self._cache["np"] = (crow.numpy(), col.numpy(), data, self.values)
        return plan[:3]

    def _block_diagonal_indices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Index tensors of ``blockdiag(A_1, ..., A_B)``: the pattern repeated with offsets."""
        if "block" not in self._cache:
            B, n, nnz = self.batch_size, self.n, self.nnz
            dtype = self.crow_indices.dtype
            offsets = torch.arange(B, device=self.device, dtype=dtype)
            crow = (self.crow_indices[:-1][None, :] + (offsets * nnz)[:, None]).reshape(-1)
            crow = torch.cat([crow, torch.tensor([B * nnz], device=self.device, dtype=dtype)])
            col = (self.col_indices[None, :] + (offsets * n)[:, None]).reshape(-1)
            self._cache["block"] = (crow, col)
        return self._cache["block"]

    def _torch_csr(self) -> torch.Tensor:
        # values may require grad: build the tensor per call so autograd sees the current values
        return csr_tensor(self.crow_indices, self.col_indices, self.values, (self.n, self.n))

    def _block_diagonal_torch(self) -> torch.Tensor:
        crow, col = self._block_diagonal_indices()
        N = self.batch_size * self.n
        return csr_tensor(crow, col, self.values.reshape(-1), (N, N))


def as_sparse_matrix(
    A: Any, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> SparseMatrix:
    """Convert a scipy sparse matrix (or list of them), torch tensor or :class:`SparseMatrix`.

    Parameters
    ----------
    A
        scipy sparse ``(n, n)`` or a list of them with one pattern; torch sparse CSR/COO ``(n, n)``,
        batched sparse CSR ``(B, n, n)`` or dense ``(n, n)``; a numpy array ``(n, n)``; or a
        :class:`SparseMatrix`.
    device, dtype
        Target placement; ``None`` keeps the current one.
    """
    if isinstance(A, SparseMatrix):
        out = A
    elif sp.issparse(A) or (isinstance(A, (list, tuple)) and A and sp.issparse(A[0])):
        out = SparseMatrix.from_scipy(A)
    elif isinstance(A, torch.Tensor):
        out = SparseMatrix.from_torch(A)
    elif isinstance(A, np.ndarray):
        out = SparseMatrix.from_scipy(sp.csr_matrix(A))
    else:
        raise TypeError(f"cannot use {type(A).__name__} as a sparse matrix")
    return out.to(device, dtype)


# -- helpers -----------------------------------------------------------------------------------


def csr_tensor(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """``torch.sparse_csr_tensor`` on ``values``' device, without its per-call warnings.

    The indices are trusted (built from scipy or by this module), so invariant checks are skipped.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
        return torch.sparse_csr_tensor(
            crow.to(values.device), col.to(values.device), values, size, check_invariants=False
        )


def csr_from_scipy(
    M: sp.spmatrix, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """scipy sparse ``(m, n)`` (rectangular allowed) -> torch sparse CSR tensor with sorted columns.

    Indices are int32 whenever they fit: torch's CPU product converts int64 indices to int32 on
    every call otherwise (a third of the time of a 5-point product on one right-hand side).
    """
    M = sp.csr_matrix(M, dtype=np.float64)
    M.sum_duplicates()  # also sorts the column indices of each row
    index_type = np.int32 if max(M.nnz, *M.shape) < np.iinfo(np.int32).max else np.int64
    indptr, indices = (torch.from_numpy(x.astype(index_type)) for x in (M.indptr, M.indices))
    return csr_tensor(indptr, indices, torch.from_numpy(M.data).to(device=device, dtype=dtype), M.shape)


def move_csr(M: torch.Tensor, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Move a torch sparse CSR tensor; only the values change dtype (the indices keep theirs)."""
    device = M.device if device is None else torch.device(device)
    dtype = M.dtype if dtype is None else dtype
    if M.device == device and M.dtype == dtype:
        return M
    return csr_tensor(M.crow_indices(), M.col_indices(), M.values().to(device=device, dtype=dtype), tuple(M.shape))


def _canonical_csr(A: Any) -> sp.csr_matrix:
    A = sp.csr_matrix(A)
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"the matrix must be square, got shape {A.shape}")
    A = A.copy()
    A.sum_duplicates()  # also sorts the column indices of each row
    return A


def _same_device(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    return a.index is None or b.index is None or a.index == b.index


def _csr_matvec(n: int, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
    """``y += A x`` for one vector with scipy's compiled kernel (y must be zero on entry)."""
    if _sparsetools is not None:
        _sparsetools.csr_matvec(n, n, indptr, indices, data, x, y)
    else:  # pragma: no cover
        y += sp.csr_matrix((data, indices, indptr), shape=(n, n)) @ x


def _csr_matvecs(
    n: int, nvec: int, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, x: np.ndarray, y: np.ndarray
) -> None:
    """``Y += A X`` for ``X`` of shape ``(n, nvec)`` C-contiguous (Y zero on entry)."""
    if _sparsetools is not None:
        _sparsetools.csr_matvecs(n, n, nvec, indptr, indices, data, x.reshape(-1), y.reshape(-1))
    else:  # pragma: no cover
        y += sp.csr_matrix((data, indices, indptr), shape=(n, n)) @ x
